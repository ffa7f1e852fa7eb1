// FileSend end to end over a real session: the daemon streams outputs, the client writes each
// to the destination of its exporter id, atomically.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, test, type TestContext } from "node:test";
import { type Connection, connect } from "../../client/connection.ts";
import { startServer } from "../../control/server.ts";
import { Control } from "../../proto/gen/moby/buildkit/v1/control_pb.ts";
import { SessionManager } from "../manager.ts";
import { Session } from "../session.ts";
import { checkDestination, type FileSendTarget, fileTarget, serveFileSend, streamTarget } from "./receive.ts";
import { sendToClient } from "./send.ts";

async function setup(t: TestContext, targets: Map<number, FileSendTarget>) {
  const dir = await mkdtemp(join(tmpdir(), "buildd-filesend-"));
  const manager = new SessionManager({ healthIntervalMs: 0 });
  const server = await startServer({
    addresses: [`unix://${join(dir, "sock")}`],
    routes: (r) => r.service(Control, { session: manager.handleSession }),
  });
  const conn: Connection = connect(`unix://${join(dir, "sock")}`);
  const session = new Session({ routes: (r) => serveFileSend(r, targets) });
  const running = session.run(conn.control).catch(() => {});
  t.after(async () => {
    session.close();
    await running;
    conn.close();
    manager.closeAll();
    await server.close({ graceMs: 500 });
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, caller: await manager.get(session.id) };
}

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("FileSend", () => {
  test("each output reaches the destination of its exporter id, with the exporter's metadata", async (t) => {
    const out = await mkdtemp(join(tmpdir(), "buildd-filesend-out-"));
    t.after(() => rm(out, { recursive: true, force: true }));
    const piped = new PassThrough();
    const piece: Buffer[] = [];
    piped.on("data", (c: Buffer) => piece.push(c));
    let seenMeta: Record<string, string> | undefined;
    const recording: FileSendTarget = (messages, call) => {
      seenMeta = call.metadata;
      return streamTarget(piped)(messages, call);
    };
    const { caller } = await setup(
      t,
      new Map<number, FileSendTarget>([
        [0, fileTarget(join(out, "first.tar"))],
        [2, recording],
      ]),
    );
    const big = randomBytes(5 * 1024 * 1024 + 123);
    const small = Buffer.from("second output");
    const [n0, n2] = await Promise.all([
      sendToClient(caller, chunks(big, 3 * 1024 * 1024), {
        exporterId: 0,
        signal: AbortSignal.timeout(30_000),
      }),
      sendToClient(caller, chunks(small, 4), {
        exporterId: 2,
        metadata: { "containerimage.digest": "sha256:abc", "image.name": "x/ü:1" },
        signal: AbortSignal.timeout(30_000),
      }),
    ]);
    assert.equal(n0, big.length);
    assert.equal(n2, small.length);
    assert.equal(sha(await readFile(join(out, "first.tar"))), sha(big));
    assert.deepEqual(Buffer.concat(piece).toString(), "second output");
    assert.deepEqual(seenMeta, { "containerimage.digest": "sha256:abc", "image.name": "x/ü:1" });
    assert.deepEqual(await readdir(out), ["first.tar"], "no temporary file is left behind");
  });

  test("a failing source leaves the destination untouched and no temporary file", async (t) => {
    const out = await mkdtemp(join(tmpdir(), "buildd-filesend-out-"));
    t.after(() => rm(out, { recursive: true, force: true }));
    const { caller } = await setup(t, new Map([[0, fileTarget(join(out, "image.tar"))]]));
    const failing = async function* () {
      yield Buffer.alloc(100_000, 1);
      throw new Error("the layer could not be read");
    };
    await assert.rejects(
      sendToClient(caller, failing(), { exporterId: 0, signal: AbortSignal.timeout(30_000) }),
      /the layer could not be read/,
    );
    // The client learns of the cancel asynchronously; wait until its handler has cleaned up.
    for (let i = 0; i < 100 && (await readdir(out)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await readdir(out), []);
  });

  test("an output the client does not know, or cannot write, is a clear error", async (t) => {
    const { caller } = await setup(t, new Map([[0, fileTarget("/nonexistent-buildd-dir/out.tar")]]));
    await assert.rejects(
      sendToClient(caller, chunks(Buffer.from("x"), 1), {
        exporterId: 5,
        signal: AbortSignal.timeout(10_000),
      }),
      /sending the output to the client: the daemon sent output 5, but this client has no such output \(it has 0\)/,
    );
    await assert.rejects(
      sendToClient(caller, chunks(Buffer.from("x"), 1), {
        exporterId: 0,
        signal: AbortSignal.timeout(10_000),
      }),
      /writing the output to \/nonexistent-buildd-dir\/out.tar: ENOENT/,
    );
    await assert.rejects(
      sendToClient(undefined, chunks(Buffer.from("x"), 1), {
        exporterId: 0,
        signal: AbortSignal.timeout(1000),
      }),
      /the build has no client session/,
    );
  });

  test("checkDestination refuses a missing directory and a directory as dest", async (t) => {
    const out = await mkdtemp(join(tmpdir(), "buildd-filesend-out-"));
    t.after(() => rm(out, { recursive: true, force: true }));
    assert.throws(() => checkDestination(join(out, "no/such/x.tar"), "--output"), /does not exist/);
    assert.throws(() => checkDestination(out, "--output"), /is a directory/);
    checkDestination(join(out, "ok.tar"), "--output");
  });
});
