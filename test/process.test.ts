import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { freePort, spawnService, tempDir, waitFor } from "./process.ts";

const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("freePort gives a port that can be bound on loopback", async () => {
  const port = await freePort();
  const server = createServer();
  await new Promise<void>((resolve, reject) =>
    server.once("error", reject).listen(port, "127.0.0.1", resolve),
  );
  await new Promise((resolve) => server.close(resolve));
});

test("waitFor returns the first truthy value and names what timed out", async () => {
  let n = 0;
  assert.equal(await waitFor(() => (++n === 3 ? "ready" : false)), "ready");
  await assert.rejects(
    waitFor(() => false, { timeoutMs: 50, what: "the moon" }),
    /waiting for the moon/,
  );
});

test("spawnService waits for readiness, stop kills the service", async (t) => {
  const { dir, cleanup } = await tempDir("proc");
  t.after(cleanup);
  const marker = join(dir, "ready");
  const svc = await spawnService("sh", ["-c", `sleep 0.2; touch ${marker}; exec sleep 600`], {
    readyCheck: () => existsSync(marker),
  });
  t.after(svc.stop);
  const pid = svc.child.pid!;
  assert.ok(alive(pid));
  await svc.stop();
  assert.equal(alive(pid), false);
});

test("spawnService fails fast with the output when the service exits before it is ready", async () => {
  await assert.rejects(
    spawnService("sh", ["-c", "echo boom >&2; exit 3"], { readyCheck: () => false, timeoutMs: 60_000 }),
    /exited \(3\) before it was ready[\s\S]*boom/,
  );
});

test("services and temp dirs die with the test process", async (t) => {
  const { dir, cleanup } = await tempDir("proc");
  t.after(cleanup);
  const script = join(dir, "child.ts");
  await writeFile(
    script,
    `import { spawnService, tempDir } from ${JSON.stringify(join(import.meta.dirname, "process.ts"))};
const svc = await spawnService("sleep", ["600"], { readyCheck: () => true });
const tmp = await tempDir("proc-child");
console.log(JSON.stringify({ pid: svc.child.pid, dir: tmp.dir }));
process.exit(0);
`,
  );
  const { stdout } = await run(process.execPath, [script]);
  const { pid, dir: childDir } = JSON.parse(stdout) as { pid: number; dir: string };
  await waitFor(() => !alive(pid), { what: `service ${pid} to die` });
  assert.equal(existsSync(childDir), false);
});

test("tempDir cleanup removes the dir", async () => {
  const { dir, cleanup } = await tempDir("proc");
  await writeFile(join(dir, "f"), "x");
  await cleanup();
  assert.equal(existsSync(dir), false);
});

test("a service tied to a test's signal stops when that test ends", async (t) => {
  let pid = 0;
  let dir = "";
  await t.test("inner", async (inner) => {
    const svc = await spawnService("sleep", ["600"], { readyCheck: () => true, signal: inner.signal });
    pid = svc.child.pid!;
    dir = (await tempDir("proc", { signal: inner.signal })).dir;
    assert.ok(alive(pid));
  });
  await waitFor(() => !alive(pid) && !existsSync(dir), { what: "the inner test's service and dir to go" });
});
