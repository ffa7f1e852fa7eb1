// Fixtures for the gateway's tests: an in-process daemon (the real worker stack, runc and all)
// with the built-in frontends and a "capture" exporter that answers with the files and metadata
// of the build's result, builds through the Control API (frontend inputs included), and a check
// that a build left nothing behind.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Connection, connect } from "../../client/connection.ts";
import { defaultConfig } from "../../control/config.ts";
import { type Daemon, registerPlugins, startDaemon } from "../../control/daemon.ts";
import { readRefFile } from "../../control/session-access.ts";
import type { State } from "../../llb/index.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { DefinitionSchema } from "../../proto/gen/pb/ops_pb.ts";
import { unmountUnder } from "../../test/daemon.ts";
import type { WorkerRef } from "../../worker/types.ts";
import "../../cmd/buildd/plugins.ts";

/** Answers with what the build produced: `file:<path>` for each path in attrs.read, `meta:<key>`, `ref`. */
registerPlugins({
  exporters: {
    "gateway-test-capture": (d) => ({
      export: async (result, attrs) => {
        const out: Record<string, string> = {};
        const ref: WorkerRef | undefined = result.ref;
        out.ref = ref ? "yes" : "none";
        for (const p of (attrs.read ?? "").split(",").filter(Boolean)) {
          if (!ref) continue;
          out[`file:${p}`] = await readRefFile(ref, p, {}, d.worker.mountRoot)
            .then((b) => new TextDecoder().decode(b))
            .catch((e: Error) => `<error: ${e.message}>`);
        }
        for (const [k, v] of Object.entries(result.metadata)) out[`meta:${k}`] = new TextDecoder().decode(v);
        return out;
      },
    }),
  },
});

export interface GatewayTestDaemon {
  daemon: Daemon;
  conn: Connection;
  root: string;
}

/** An in-process buildd on a unix socket in a temporary root, closed after the test. */
export async function startGatewayDaemon(
  t: TestContext,
  opts: { allowed?: string[] } = {},
): Promise<GatewayTestDaemon> {
  const base = await mkdtemp(join(tmpdir(), "buildd-gateway-"));
  const config = defaultConfig();
  config.root = join(base, "root");
  config.grpc.address = [`unix://${join(base, "buildd.sock")}`];
  config.worker.oci.gc = false;
  config.frontend.allowed = opts.allowed ?? [];
  const quiet = { debug() {}, info() {}, warn() {}, error() {}, with: () => quiet };
  const daemon = await startDaemon(config, { log: quiet as never });
  const conn = connect(config.grpc.address[0]!);
  t.after(async () => {
    conn.close();
    await daemon.close({ deadlineMs: 5_000 });
    await unmountUnder(base);
    await rm(base, { recursive: true, force: true });
  });
  return { daemon, conn, root: config.root };
}

export interface BuildOutcome {
  ok: boolean;
  error?: string;
  response: Record<string, string>;
  /** Names of every vertex the progress showed. */
  vertices: { name: string; cached: boolean; error: string }[];
  /** All log text of the progress. */
  logs: string;
  warnings: string[];
}

/** Runs one build through Control.Solve (with Status alongside) and collects everything. */
export async function build(
  d: GatewayTestDaemon,
  req: {
    frontend: string;
    opts?: Record<string, string>;
    inputs?: Record<string, State | Uint8Array>;
    read?: string[];
    signal?: AbortSignal;
    onLog?: (text: string) => void;
  },
): Promise<BuildOutcome> {
  const ref = `gateway-test-${Math.random().toString(36).slice(2)}`;
  const vertices = new Map<string, { name: string; cached: boolean; error: string }>();
  let logs = "";
  const warnings: string[] = [];
  const status = (async () => {
    try {
      for await (const s of d.conn.control.status({ Ref: ref })) {
        for (const v of s.vertexes) {
          vertices.set(v.digest, { name: v.name, cached: v.cached, error: v.error });
          void timestampMs;
        }
        for (const l of s.logs) {
          const text = new TextDecoder().decode(l.msg);
          logs += text;
          req.onLog?.(text);
        }
        for (const w of s.warnings) warnings.push(new TextDecoder().decode(w.short));
      }
    } catch {
      // the build ended
    }
  })();
  const toDef = (v: State | Uint8Array) =>
    fromBinary(DefinitionSchema, v instanceof Uint8Array ? v : v.marshal().bytes);
  try {
    const res = await d.conn.control.solve(
      {
        Ref: ref,
        Frontend: req.frontend,
        FrontendAttrs: req.opts ?? {},
        FrontendInputs: Object.fromEntries(Object.entries(req.inputs ?? {}).map(([k, v]) => [k, toDef(v)])),
        Exporters: [{ Type: "gateway-test-capture", Attrs: { read: (req.read ?? []).join(",") } }],
      },
      { signal: req.signal },
    );
    await status;
    return { ok: true, response: res.ExporterResponse, vertices: [...vertices.values()], logs, warnings };
  } catch (e) {
    await status;
    return {
      ok: false,
      error: ConnectError.from(e).rawMessage,
      response: {},
      vertices: [...vertices.values()],
      logs,
      warnings,
    };
  }
}

/** Nothing a build made is left: no container, no mount under the daemon's root, no ref in use or mutable. */
export async function assertNothingLeft(d: GatewayTestDaemon): Promise<void> {
  // Releases run right after the build; give them a moment to finish.
  for (let i = 0; ; i++) {
    const containers = await readdir(join(d.root, "executor/runc")).catch(() => []);
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((p) => p.startsWith(`${d.root}/`) && p !== join(d.root, "executor"));
    const records = await d.daemon.parts.cache.du({});
    const busy = records.filter((r) => r.inUse || r.mutable).map((r) => `${r.id} ${r.description}`);
    const leaks = { containers, mounts, busy };
    if (containers.length + mounts.length + busy.length === 0) return;
    if (i >= 50) assert.deepEqual(leaks, { containers: [], mounts: [], busy: [] });
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Definition bytes, for inputs given as states. */
export function definitionBytes(s: State): Uint8Array {
  return toBinary(DefinitionSchema, fromBinary(DefinitionSchema, s.marshal().bytes));
}
