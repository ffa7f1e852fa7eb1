// The client over a byte stream that delivers whole responses in one chunk, as a pipe read
// does: without frame-by-frame delivery every call fails with "Premature close".
import assert from "node:assert/strict";
import { Duplex, Transform } from "node:stream";
import { test } from "node:test";
import { Code, type ConnectError } from "@connectrpc/connect";
import { LLBBridge } from "../../../proto/gen/moby/buildkit/v1/frontend/gateway_pb.ts";
import type { FrontendBridge } from "../../types.ts";
import { LLBBridgeForwarder } from "../forwarder.ts";
import { serveOnStream } from "../serve.ts";
import { GatewayClient } from "./client.ts";
import { connectBridge } from "./connection.ts";

/** Holds writes and hands them on later as one chunk. */
function coalescing(): Transform {
  let held: Buffer[] = [];
  let scheduled = false;
  const t: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      held.push(chunk);
      if (!scheduled) scheduled = true;
      else return callback();
      setTimeout(() => {
        scheduled = false;
        const all = Buffer.concat(held);
        held = [];
        t.push(all);
      }, 2);
      callback();
    },
  });
  return t;
}

const warnings: string[] = [];
const bridge: FrontendBridge = {
  solve: async () => undefined,
  readFile: async () => new Uint8Array(),
  resolveImageConfig: async (ref) => ({
    digest: `sha256:${"a".repeat(64)}`,
    config: { config: { Env: [`REF=${ref}`] } },
  }),
  warn: () => {},
  opts: {},
  inputs: {},
  signal: new AbortController().signal,
  frontend: () => undefined,
  progress: (s) => warnings.push(...(s.warnings ?? []).map((w) => w.short)),
};

test("calls work when each response arrives in one chunk", async (t) => {
  const forwarder = new LLBBridgeForwarder({ bridge, label: "frontend test", workers: [] });
  const toServer = coalescing();
  const toClient = coalescing();
  const server = serveOnStream(Duplex.from({ readable: toServer, writable: toClient }), (r) =>
    r.service(LLBBridge, forwarder.service()),
  );
  const conn = connectBridge(Duplex.from({ readable: toClient, writable: toServer }));
  t.after(() => {
    conn.close();
    server.close();
  });
  const c = new GatewayClient(conn, {
    BUILDKIT_FRONTEND_OPT_0: "build-arg:A=b=c",
    BUILDKIT_SESSION_ID: "s1",
  });
  assert.deepEqual(c.opts, { "build-arg:A": "b=c" });
  assert.equal(c.sessionId, "s1");
  for (let i = 0; i < 10; i++) {
    const caps = await c.ping();
    assert.ok(caps.has("readdir"));
    const cfg = await c.resolveImageConfig(`img${i}`);
    assert.deepEqual(cfg.config, { config: { Env: [`REF=img${i}`] } });
  }
  assert.deepEqual(await c.inputs(), {});
  await c.warn("careful");
  assert.deepEqual(warnings, ["careful"]);
  const solved = await c.solve({ definition: new Uint8Array() });
  assert.equal(solved.ref, undefined, "an empty definition is an empty result");
  await assert.rejects(
    c.readFile("nope", "/x"),
    (e: ConnectError) => e.code === Code.NotFound && /unknown ref "nope"/.test(e.rawMessage),
  );
  await c.return({ metadata: { k: "v" } });
  const outcome = await forwarder.returned;
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.result, { ref: undefined, metadata: { k: new TextEncoder().encode("v") } });
  await assert.rejects(c.return({}), /Return was called twice/);
});
