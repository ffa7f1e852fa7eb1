// Benchmark (not a test): file sync of a generated context of about 200 MB in 5,000 files, cold
// (into an empty dir) and unchanged (a rebuild), against `tar c | tar x` of the same dir.
//
//   node bench/sync.ts [dir] [files] [totalMB] [runs]
//
// The client side runs in its own process, as buildctl does; the daemon side (SessionManager, the
// unix socket server, syncDir) in this one. `dir` (default the OS temp dir) picks the filesystem.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { startServer } from "../control/server.ts";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { SessionManager } from "../session/manager.ts";
import { type SyncResult, syncDir } from "../session/filesync/receive.ts";
import { generateTree, summary, timed } from "./common.ts";

const parent = process.argv[2] || tmpdir();
const files = Number(process.argv[3] ?? 5000);
const totalMB = Number(process.argv[4] ?? 200);
const runs = Number(process.argv[5] ?? 5);

/** A client in its own process sharing `dir` as "ctx"; resolves with its session id. */
async function startClient(
  sock: string,
  dir: string,
  scratch: string,
): Promise<{ id: string; child: ChildProcess }> {
  const here = resolve(import.meta.dirname, "..");
  const mod = (p: string) => JSON.stringify(pathToFileURL(join(here, p)).href);
  const script = join(scratch, "client.mjs");
  await writeFile(
    script,
    `import { connect } from ${mod("client/connection.ts")};
import { Session } from ${mod("session/session.ts")};
import { fileSyncRoutes } from ${mod("session/filesync/send.ts")};
const session = new Session({ name: "bench", routes: fileSyncRoutes({ ctx: process.argv[3] }) });
process.stdout.write(session.id + "\\n");
const conn = connect(process.argv[2]);
process.on("SIGINT", () => session.close());
await session.run(conn.control);
conn.close();
`,
  );
  const prof = process.env.BENCH_CLIENT_PROF
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CLIENT_PROF}`]
    : [];
  const child = spawn(process.execPath, [...prof, script, `unix://${sock}`, dir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const id = await new Promise<string>((res) =>
    child.stdout!.once("data", (d: Buffer) => res(d.toString().trim())),
  );
  return { id, child };
}

const base = await mkdtemp(join(parent, "buildd-bench-sync-"));
const manager = new SessionManager({ healthIntervalMs: 0 });
const sock = join(base, "buildd.sock");
const server = await startServer({
  addresses: [`unix://${sock}`],
  routes: (r) => r.service(Control, { session: manager.handleSession }),
});
let client: ChildProcess | undefined;
try {
  const src = join(base, "src");
  const dst = join(base, "dst");
  await mkdir(src);
  console.log(`generating ${files} files, ~${totalMB} MB in ${src}`);
  await generateTree(src, files, totalMB);
  execFileSync("sync");
  const du = execFileSync("du", ["-sm", src], { encoding: "utf8" }).split("\t")[0];
  console.log(`tree is ${du} MB; threadpool ${process.env.UV_THREADPOOL_SIZE ?? "4 (default)"}`);
  const c = await startClient(sock, src, base);
  client = c.child;
  const caller = await manager.get(c.id, { timeoutMs: 20_000 });
  const reset = async () => {
    await rm(dst, { recursive: true, force: true });
    await mkdir(dst);
    execFileSync("sync");
  };

  const tarTimes: number[] = [];
  const coldTimes: number[] = [];
  const warmTimes: number[] = [];
  let cold: SyncResult | undefined;
  for (let i = 0; i < runs; i++) {
    await reset();
    tarTimes.push(
      (
        await timed(
          async () =>
            void execFileSync("bash", [
              "-c",
              'set -o pipefail; tar -C "$1" -cf - . | tar -C "$2" -xf -',
              "_",
              src,
              dst,
            ]),
        )
      ).ms,
    );
    await reset();
    const c1 = await timed(() => syncDir(caller, { name: "ctx", target: dst }));
    coldTimes.push(c1.ms);
    cold = c1.value;
    const w1 = await timed(() => syncDir(caller, { name: "ctx", target: dst, previous: cold!.manifest }));
    warmTimes.push(w1.ms);
    if (w1.value.bytesReceived !== 0 || w1.value.checksum !== cold.checksum) {
      throw new Error(`the unchanged sync transferred ${w1.value.bytesReceived} bytes`);
    }
    console.log(
      `  run ${i + 1}: tar ${tarTimes[i]!.toFixed(0)} ms, cold sync ${c1.ms.toFixed(0)} ms ` +
        `(${c1.value.filesRequested} files, ${(c1.value.bytesReceived / 1e6).toFixed(1)} MB), ` +
        `unchanged sync ${w1.ms.toFixed(0)} ms (${w1.value.filesRequested} files, ${w1.value.bytesReceived} bytes)`,
    );
  }
  const tar = summary(tarTimes);
  const c2 = summary(coldTimes);
  const w2 = summary(warmTimes);
  console.log(
    `tar c|x best ${tar.best.toFixed(0)} ms median ${tar.median.toFixed(0)} ms; ` +
      `cold best ${c2.best.toFixed(0)} ms median ${c2.median.toFixed(0)} ms; ` +
      `unchanged best ${w2.best.toFixed(0)} ms median ${w2.median.toFixed(0)} ms`,
  );
  console.log(
    `ratio cold/tar best ${(c2.best / tar.best).toFixed(2)} median ${(c2.median / tar.median).toFixed(2)}; ` +
      `unchanged/tar best ${(w2.best / tar.best).toFixed(2)} median ${(w2.median / tar.median).toFixed(2)}`,
  );
} finally {
  client?.kill("SIGINT");
  await new Promise((r) => setTimeout(r, 500));
  manager.closeAll();
  await server.close({ graceMs: 1000 });
  await rm(base, { recursive: true, force: true });
}
