// The daemon's listeners over real sockets: typed calls, grpc-go-compatible answers to unknown
// methods, socket-file safety, graceful shutdown and mutual TLS.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { connect } from "../client/connection.ts";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { makePKI } from "../test/pki.ts";
import { startServer } from "./server.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "buildd-control-"));
  dirs.push(d);
  return d;
}

/** ListWorkers and Info stubs, as the daemon will serve them before workers exist. */
function stubRoutes(extra: Partial<ServiceImpl<typeof Control>> = {}) {
  return (r: ConnectRouter) =>
    r.service(Control, {
      listWorkers: () => ({
        record: [
          {
            ID: "stub-worker",
            Labels: { "org.mobyproject.buildkit.worker.executor": "oci" },
            platforms: [{ OS: "linux", Architecture: "amd64" }],
            GCPolicy: [{ all: true, keepDuration: 172800n, reservedSpace: 10n << 30n }],
          },
        ],
      }),
      info: () => ({ buildkitVersion: { package: "buildd", version: "0.1.0-dev", revision: "test" } }),
      ...extra,
    });
}

describe("startServer", () => {
  test("serves typed calls on a unix socket (mode 0660) and on TCP", async (t) => {
    const sock = join(tempDir(), "buildd.sock");
    const server = await startServer({
      addresses: [`unix://${sock}`, "tcp://127.0.0.1:0"],
      routes: stubRoutes(),
    });
    t.after(() => server.close({ graceMs: 0 }));
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    assert.ok(statSync(sock).isSocket());
    const tcp = server.listeners[1]!;
    assert.match(tcp.address, /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/);

    for (const addr of [`unix://${sock}`, tcp.address]) {
      const conn = connect(addr);
      t.after(() => conn.close());
      const workers = await conn.control.listWorkers({});
      assert.equal(workers.record.length, 1);
      assert.equal(workers.record[0]!.ID, "stub-worker");
      assert.equal(workers.record[0]!.platforms[0]!.Architecture, "amd64");
      assert.equal(workers.record[0]!.GCPolicy[0]!.reservedSpace, 10n << 30n);
      const info = await conn.control.info({});
      assert.equal(info.buildkitVersion?.package, "buildd");
    }
  });

  test("answers an unknown method with a trailers-only grpc-status 12", async (t) => {
    const sock = join(tempDir(), "buildd.sock");
    const server = await startServer({ addresses: [`unix://${sock}`], routes: stubRoutes() });
    t.after(() => server.close({ graceMs: 0 }));
    // A raw HTTP/2 request, to see the frames a grpc-go client would see.
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(sock) });
    t.after(() => session.destroy());
    const req = session.request({
      ":method": "POST",
      ":path": "/moby.buildkit.v1.Nope/Missing",
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.end(Buffer.from([0, 0, 0, 0, 0])); // one empty gRPC message
    let dataBytes = 0;
    let trailers = false;
    req.on("data", (c: Buffer) => {
      dataBytes += c.length;
    });
    req.on("trailers", () => {
      trailers = true;
    });
    const [headers, flags] = await new Promise<[http2.IncomingHttpHeaders, number]>((resolve, reject) => {
      req.once("response", (h, f) => resolve([h, f]));
      req.once("error", reject);
    });
    await new Promise<void>((resolve) => req.once("close", () => resolve()));
    assert.equal(headers[":status"], 200);
    assert.equal(headers["content-type"], "application/grpc");
    assert.equal(headers["grpc-status"], "12");
    assert.match(String(headers["grpc-message"]), /unknown method \/moby\.buildkit\.v1\.Nope\/Missing/);
    assert.ok(flags & http2.constants.NGHTTP2_FLAG_END_STREAM, "the HEADERS frame must end the stream");
    assert.equal(dataBytes, 0);
    assert.equal(trailers, false);
  });

  test("a known service's unregistered method fails with Code.Unimplemented", async (t) => {
    const sock = join(tempDir(), "buildd.sock");
    const server = await startServer({ addresses: [`unix://${sock}`], routes: stubRoutes() });
    t.after(() => server.close({ graceMs: 0 }));
    const conn = connect(`unix://${sock}`);
    t.after(() => conn.close());
    await assert.rejects(conn.control.solve({ Ref: "x" }), (e: unknown) => {
      assert.equal(ConnectError.from(e).code, Code.Unimplemented);
      return true;
    });
  });

  test("removes a stale socket, but never a live one or a file that is not a socket", async (t) => {
    const dir = tempDir();
    // A socket left behind by a process that died without cleaning up.
    const stale = join(dir, "stale.sock");
    const child = spawn(
      process.execPath,
      [
        "-e",
        `require("net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`,
      ],
      { stdio: "ignore" },
    );
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok(statSync(stale).isSocket(), "the killed process left its socket");
    const server = await startServer({ addresses: [`unix://${stale}`], routes: stubRoutes() });
    t.after(() => server.close({ graceMs: 0 }));
    const conn = connect(`unix://${stale}`);
    t.after(() => conn.close());
    assert.equal((await conn.control.listWorkers({})).record.length, 1);

    // The same path again: someone answers there, so it must not be taken over.
    await assert.rejects(
      startServer({ addresses: [`unix://${stale}`], routes: stubRoutes() }),
      /another process is serving on this socket/,
    );
    assert.equal((await conn.control.listWorkers({})).record.length, 1, "the first server still serves");

    const regular = join(dir, "not-a-socket");
    writeFileSync(regular, "precious");
    await assert.rejects(
      startServer({ addresses: [`unix://${regular}`], routes: stubRoutes() }),
      /exists and is not a socket/,
    );
    assert.equal(readFileSync(regular, "utf8"), "precious");
  });

  test("a failing address closes the listeners already opened", async () => {
    const dir = tempDir();
    const sock = join(dir, "first.sock");
    const regular = join(dir, "file");
    writeFileSync(regular, "");
    await assert.rejects(
      startServer({ addresses: [`unix://${sock}`, `unix://${regular}`], routes: stubRoutes() }),
      /not a socket/,
    );
    assert.equal(existsSync(sock), false, "the first listener's socket was removed");
  });

  test("close() lets in-flight calls finish, refuses new ones and removes the socket", async () => {
    const sock = join(tempDir(), "buildd.sock");
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const server = await startServer({
      addresses: [`unix://${sock}`],
      routes: stubRoutes({
        async diskUsage() {
          entered();
          await released;
          return { record: [{ ID: "r1", Size: 42n }] };
        },
      }),
    });
    const conn = connect(`unix://${sock}`);
    try {
      const slow = conn.control.diskUsage({});
      await inHandler;
      assert.equal(server.activeStreams(), 1);
      const closed = server.close({ graceMs: 30_000 });
      assert.ok(server.shutdownSignal.aborted);
      // New connections are refused once close() has begun.
      const late = connect(`unix://${sock}`);
      await assert.rejects(late.control.listWorkers({}), (e: unknown) => {
        assert.equal(ConnectError.from(e).code, Code.Unavailable);
        return true;
      });
      late.close();
      release();
      const res = await slow;
      assert.equal(res.record[0]!.Size, 42n);
      await closed;
      assert.equal(existsSync(sock), false);
    } finally {
      conn.close();
    }
  });

  test("close() destroys streams still open at the deadline", async () => {
    const sock = join(tempDir(), "buildd.sock");
    const server = await startServer({
      addresses: [`unix://${sock}`],
      routes: stubRoutes({
        // A Status stream for a build that never ends.
        async *status(_req, ctx) {
          yield {};
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        },
      }),
    });
    const conn = connect(`unix://${sock}`);
    try {
      const stream = conn.control.status({ Ref: "forever" })[Symbol.asyncIterator]();
      await stream.next();
      await server.close({ graceMs: 50 });
      await assert.rejects(stream.next(), ConnectError);
      assert.equal(server.activeStreams(), 0);
    } finally {
      conn.close();
    }
  });

  test("mutual TLS on TCP: a client with a certificate from the CA is served, others are not", async (t) => {
    const pki = makePKI(tempDir());
    const server = await startServer({
      addresses: ["tcp://127.0.0.1:0"],
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca },
      routes: stubRoutes(),
    });
    t.after(() => server.close({ graceMs: 0 }));
    const addr = server.listeners[0]!.address;
    assert.equal(server.listeners[0]!.secure, true);

    const good = connect(addr, { tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    t.after(() => good.close());
    assert.equal((await good.control.listWorkers({})).record[0]!.ID, "stub-worker");

    const anonymous = connect(addr, { tls: { ca: pki.ca } });
    t.after(() => anonymous.close());
    await assert.rejects(anonymous.control.listWorkers({}), ConnectError);

    const plaintext = connect(addr);
    t.after(() => plaintext.close());
    await assert.rejects(plaintext.control.listWorkers({}), ConnectError);
  });
});
