// Sessions end to end over a real unix socket: the client's Session serves its services inside
// Control.Session and the daemon's SessionManager calls them back.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Connection, connect } from "../client/connection.ts";
import { startServer } from "../control/server.ts";
import { Packet_PacketType } from "../proto/gen/fsutil/types/wire_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { Secrets } from "../proto/gen/moby/buildkit/secrets/v1/secrets_pb.ts";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { FileSend, FileSync } from "../proto/gen/moby/filesync/v1/filesync_pb.ts";
import { type SessionManagerOptions, SessionManager } from "./manager.ts";
import { Session } from "./session.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A daemon with only Control.Session, on a unix socket in a temp dir, and a client connection. */
async function startDaemon(t: { after: (fn: () => unknown) => void }, opts: SessionManagerOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), "buildd-session-"));
  dirs.push(dir);
  const sock = join(dir, "buildd.sock");
  const manager = new SessionManager({ healthIntervalMs: 0, ...opts });
  const server = await startServer({
    addresses: [`unix://${sock}`],
    routes: (r) => r.service(Control, { session: manager.handleSession }),
  });
  const conn = connect(`unix://${sock}`);
  t.after(async () => {
    conn.close();
    manager.closeAll();
    await server.close({ graceMs: 1000 });
  });
  return { dir, sock, manager, server, conn };
}

/** Runs a session in the background and makes sure it is stopped when the test ends. */
function runSession(t: { after: (fn: () => unknown) => void }, session: Session, conn: Connection) {
  const running = session.run(conn.control);
  running.catch(() => {}); // asserted where it matters
  t.after(async () => {
    session.close();
    await running.catch(() => {});
  });
  return running;
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const sha256 = (chunks: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const c of chunks) h.update(c);
  return h.digest("hex");
};

describe("session", () => {
  test("the daemon calls back the client's Secrets and Health, waiting for the session to arrive", async (t) => {
    const { manager, conn } = await startDaemon(t);
    const session = new Session({
      name: "myproject",
      sharedKey: "key-1",
      routes: (r) => r.rpc(Secrets.method.getSecret, (req) => ({ data: bytes(`value of ${req.ID}`) })),
    });
    // As in a real build, the daemon looks the session up before the client has opened it.
    const lookup = manager.get(session.id);
    runSession(t, session, conn);
    const caller = await lookup;

    assert.equal(caller.id, session.id);
    assert.equal(caller.name, "myproject");
    assert.equal(caller.sharedKey, "key-1");
    assert.deepEqual([...caller.methods].sort(), [
      "/grpc.health.v1.Health/Check",
      "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    ]);
    assert.ok(caller.supports("/moby.buildkit.secrets.v1.Secrets/GetSecret"));
    assert.ok(!caller.supports("/moby.filesync.v1.FileSync/DiffCopy"));

    const secret = await caller.callerFor(Secrets).getSecret({ ID: "npmrc" });
    assert.equal(text(secret.data), "value of npmrc");
    const health = await caller.callerFor(Health).check({});
    assert.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
    // A method the client does not serve answers like grpc-go: Unimplemented.
    await assert.rejects(
      drain(caller.callerFor(FileSync).tarStream((async function* () {})())),
      (e: unknown) => {
        assert.equal(ConnectError.from(e).code, Code.Unimplemented);
        return true;
      },
    );
    assert.equal(await manager.get(session.id), caller, "a live session is returned at once");
  });

  test("get() gives up after its timeout or when its signal aborts", async (t) => {
    const { manager } = await startDaemon(t);
    await assert.rejects(manager.get("nobody", { timeoutMs: 50 }), (e: unknown) => {
      assert.equal(ConnectError.from(e).code, Code.DeadlineExceeded);
      assert.match((e as Error).message, /waiting for session nobody: no client opened it within 50 ms/);
      return true;
    });
    const ac = new AbortController();
    const waiting = manager.get("nobody", { signal: ac.signal, timeoutMs: 60_000 });
    ac.abort(new Error("the build was cancelled"));
    await assert.rejects(waiting, (e: unknown) => {
      assert.equal(ConnectError.from(e).code, Code.Canceled);
      assert.match((e as Error).message, /the build was cancelled/);
      return true;
    });
    await assert.rejects(manager.get(""), /session id is empty/);
  });

  test("bidi streams: FileSync packets and a multi-megabyte FileSend round trip", async (t) => {
    const { manager, conn } = await startDaemon(t);
    const session = new Session({
      routes: (r) => {
        // Echo servers: what the daemon sends comes back unchanged.
        r.rpc(FileSync.method.diffCopy, async function* (reqs) {
          for await (const p of reqs) yield p;
        });
        r.rpc(FileSend.method.diffCopy, async function* (reqs) {
          for await (const m of reqs) yield { data: m.data };
        });
      },
    });
    runSession(t, session, conn);
    const caller = await manager.get(session.id);

    const packets = caller.callerFor(FileSync).diffCopy(
      (async function* () {
        yield {
          type: Packet_PacketType.PACKET_STAT,
          stat: { path: "a/b.txt", mode: 0o644, size: 3n, modTime: 1n },
        };
        yield { type: Packet_PacketType.PACKET_DATA, ID: 0, data: bytes("abc") };
        yield { type: Packet_PacketType.PACKET_FIN };
      })(),
    );
    const got = [];
    for await (const p of packets) got.push(p);
    assert.deepEqual(
      got.map((p) => p.type),
      [Packet_PacketType.PACKET_STAT, Packet_PacketType.PACKET_DATA, Packet_PacketType.PACKET_FIN],
    );
    assert.equal(got[0]!.stat?.path, "a/b.txt");
    assert.equal(got[0]!.stat?.size, 3n);
    assert.equal(text(got[1]!.data), "abc");

    // 24 MiB in 256 KiB messages: much more than every window and buffer on the way.
    const sent = Array.from({ length: 96 }, () => randomBytes(256 << 10));
    const echoed: Uint8Array[] = [];
    for await (const m of caller.callerFor(FileSend).diffCopy(
      (async function* () {
        for (const data of sent) yield { data };
      })(),
    )) {
      echoed.push(m.data);
    }
    assert.equal(
      echoed.reduce((n, c) => n + c.length, 0),
      sent.reduce((n, c) => n + c.length, 0),
    );
    assert.equal(sha256(echoed), sha256(sent));
  });

  test("a client that does not read holds the daemon's sender back (backpressure through the tunnel)", async (t) => {
    const { manager, conn } = await startDaemon(t);
    let startReading!: () => void;
    const reading = new Promise<void>((resolve) => {
      startReading = resolve;
    });
    let received = 0;
    const session = new Session({
      routes: (r) =>
        r.rpc(FileSend.method.diffCopy, async function* (reqs) {
          await reading;
          for await (const m of reqs) received += m.data.length;
          yield { data: bytes(String(received)) };
        }),
    });
    runSession(t, session, conn);
    const caller = await manager.get(session.id);

    const total = 64 << 20;
    const chunk = Buffer.alloc(256 << 10, 7);
    let produced = 0;
    const reply = caller.callerFor(FileSend).diffCopy(
      (async function* () {
        while (produced < total) {
          produced += chunk.length;
          yield { data: chunk };
        }
      })(),
    );
    const replies = (async () => {
      const out = [];
      for await (const m of reply) out.push(text(m.data));
      return out;
    })();
    // Wait until the sender is stalled: nothing more is produced for a while.
    let last = -1;
    while (produced !== last) {
      last = produced;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(
      produced < total / 2,
      `the sender should stall well before ${total} bytes, produced ${produced}`,
    );
    assert.equal(received, 0);
    startReading();
    assert.deepEqual(await replies, [String(total)]);
  });

  test("a client process that dies: the daemon sees it and pending calls fail clearly", async (t) => {
    const { dir, sock, manager } = await startDaemon(t);
    // The client lives in its own process, so that it can die as a real client would.
    const script = join(dir, "client.mjs");
    const root = resolve(import.meta.dirname, "..");
    const mod = (p: string) => JSON.stringify(pathToFileURL(join(root, p)).href);
    writeFileSync(
      script,
      `import { connect } from ${mod("client/connection.ts")};
import { Session } from ${mod("session/session.ts")};
import { Secrets } from ${mod("proto/gen/moby/buildkit/secrets/v1/secrets_pb.ts")};
const session = new Session({
  name: "doomed",
  // A secret that never comes: the daemon's call stays pending until the client dies.
  routes: (r) => r.rpc(Secrets.method.getSecret, () => new Promise(() => {})),
});
process.stdout.write(session.id + "\\n");
await session.run(connect(process.argv[2]).control);
`,
    );
    const child = spawn(process.execPath, [script, `unix://${sock}`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    t.after(() => child.kill("SIGKILL"));
    const id = await new Promise<string>((resolve) =>
      child.stdout.once("data", (d: Buffer) => resolve(d.toString().trim())),
    );
    const caller = await manager.get(id, { timeoutMs: 20_000 });
    assert.equal(caller.name, "doomed");

    const pending = caller.callerFor(Secrets).getSecret({ ID: "never" });
    pending.catch(() => {});
    await new Promise((r) => setTimeout(r, 50)); // let the call reach the client
    child.kill("SIGKILL");

    await assert.rejects(pending, (e: unknown) => {
      const err = ConnectError.from(e);
      assert.equal(err.code, Code.Unavailable);
      assert.match(err.message, new RegExp(`session ${id} \\("doomed"\\) closed: the client went away`));
      return true;
    });
    await new Promise<void>((resolve) => {
      if (caller.signal.aborted) resolve();
      else caller.signal.addEventListener("abort", () => resolve());
    });
    assert.deepEqual(manager.list(), []);
    await assert.rejects(caller.callerFor(Secrets).getSecret({ ID: "again" }), /closed/);
  });

  test("either end can close: the other one sees it", async (t) => {
    const { manager, conn } = await startDaemon(t);

    const byClient = new Session({ name: "client-closes" });
    const clientRun = runSession(t, byClient, conn);
    const c1 = await manager.get(byClient.id);
    byClient.close();
    await clientRun; // a session closed on purpose ends without error
    await new Promise<void>((resolve) => {
      if (c1.signal.aborted) resolve();
      else c1.signal.addEventListener("abort", () => resolve());
    });
    assert.match(
      (c1.signal.reason as Error).message,
      /session .* \("client-closes"\) closed: the client ended the session/,
    );
    await assert.rejects(
      c1.callerFor(Health).check({}),
      (e: unknown) => ConnectError.from(e).code === Code.Unavailable,
    );

    const byDaemon = new Session({ name: "daemon-closes" });
    const daemonRun = runSession(t, byDaemon, conn);
    const c2 = await manager.get(byDaemon.id);
    c2.close("build finished");
    await daemonRun;
    assert.match((c2.signal.reason as Error).message, /closed: build finished/);
    assert.deepEqual(manager.list(), []);
  });

  test("concurrent sessions are kept apart", async (t) => {
    const { manager, conn } = await startDaemon(t);
    const sessions = Array.from(
      { length: 6 },
      (_, i) =>
        new Session({
          name: `s${i}`,
          routes: (r) => r.rpc(Secrets.method.getSecret, (req) => ({ data: bytes(`s${i}:${req.ID}`) })),
        }),
    );
    for (const s of sessions) runSession(t, s, conn);
    const answers = await Promise.all(
      sessions.map(async (s) => {
        const caller = await manager.get(s.id);
        const replies = await Promise.all(
          ["a", "b", "c"].map(async (id) =>
            text((await caller.callerFor(Secrets).getSecret({ ID: id })).data),
          ),
        );
        return replies.join(",");
      }),
    );
    assert.deepEqual(
      answers,
      sessions.map((_, i) => `s${i}:a,s${i}:b,s${i}:c`),
    );
    assert.equal(manager.list().length, sessions.length);
  });

  test("a second session with a live session's id is refused", async (t) => {
    const { manager, conn } = await startDaemon(t);
    const first = new Session({ name: "first" });
    runSession(t, first, conn);
    await manager.get(first.id);
    const second = new Session({ id: first.id, name: "second" });
    await assert.rejects(second.run(conn.control), (e: unknown) => {
      assert.equal(ConnectError.from(e).code, Code.AlreadyExists);
      return true;
    });
    assert.equal((await manager.get(first.id)).name, "first");
  });

  test("the daemon closes a session whose health checks keep failing", async (t) => {
    const { manager, conn } = await startDaemon(t, { healthIntervalMs: 20, healthFailures: 2 });
    const sick = new Session({
      name: "sick",
      routes: (r) =>
        r.rpc(Health.method.check, () => ({ status: HealthCheckResponse_ServingStatus.NOT_SERVING })),
    });
    const running = runSession(t, sick, conn);
    const caller = await manager.get(sick.id);
    await new Promise<void>((resolve) => caller.signal.addEventListener("abort", () => resolve()));
    assert.match((caller.signal.reason as Error).message, /2 health checks in a row failed/);
    await running;
  });
});
