// The client connection against raw HTTP/2 servers: what BuildKit's daemon would see on the
// wire, and what a CLI user sees when the daemon is not there.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { Secrets } from "../proto/gen/moby/buildkit/secrets/v1/secrets_pb.ts";
import { Session } from "../session/session.ts";
import { connect } from "./connection.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "buildd-client-"));
  dirs.push(d);
  return d;
}

test("a missing daemon is reported with its address and a hint", async () => {
  const addr = `unix://${join(tempDir(), "nobody.sock")}`;
  const conn = connect(addr);
  try {
    await assert.rejects(conn.control.listWorkers({}), (e: unknown) => {
      const err = ConnectError.from(e);
      assert.equal(err.code, Code.Unavailable);
      assert.match(
        err.message,
        new RegExp(`cannot reach buildd at ${addr}: ENOENT \\(is the daemon running`),
      );
      return true;
    });
  } finally {
    conn.close();
  }
});

test("TLS options are refused for unix sockets", () => {
  assert.throws(
    () => connect("unix:///tmp/x.sock", { tls: {} }),
    /TLS options apply to tcp:\/\/ addresses only/,
  );
});

test("Control.Session announces each offered method as its own header field, as grpc-go expects", async (t) => {
  const sock = join(tempDir(), "raw.sock");
  // A bare HTTP/2 server that records the request and refuses it the way grpc-go would.
  const server = http2.createServer();
  const seen: { path: string; raw: string[] }[] = [];
  server.on("stream", (stream, headers, _flags, rawHeaders) => {
    seen.push({ path: String(headers[":path"]), raw: rawHeaders });
    stream.respond(
      { ":status": 200, "content-type": "application/grpc", "grpc-status": "7", "grpc-message": "denied" },
      { endStream: true },
    );
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const conn = connect(`unix://${sock}`);
  t.after(() => conn.close());

  const session = new Session({
    id: "sess-1",
    name: "proj",
    sharedKey: "shared",
    routes: (r) => r.rpc(Secrets.method.getSecret, () => ({})),
  });
  await assert.rejects(session.run(conn.control), (e: unknown) => {
    assert.equal(ConnectError.from(e).code, Code.PermissionDenied);
    return true;
  });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.path, "/moby.buildkit.v1.Control/Session");
  const fields: [string, string][] = [];
  for (let i = 0; i < seen[0]!.raw.length; i += 2) fields.push([seen[0]!.raw[i]!, seen[0]!.raw[i + 1]!]);
  const values = (name: string) => fields.filter(([k]) => k === name).map(([, v]) => v);
  assert.deepEqual(values("x-docker-expose-session-uuid"), ["sess-1"]);
  assert.deepEqual(values("x-docker-expose-session-name"), ["proj"]);
  assert.deepEqual(values("x-docker-expose-session-sharedkey"), ["shared"]);
  assert.deepEqual(values("x-docker-expose-session-grpc-method").sort(), [
    "/grpc.health.v1.Health/Check",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
  ]);
});
