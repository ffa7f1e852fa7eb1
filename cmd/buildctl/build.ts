// `buildctl build`: opens a session (local dirs, secrets, outputs), calls Solve and Status at
// once, renders the progress, and reports the result.
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Connection } from "../../client/connection.ts";
import type { StatusResponse } from "../../proto/gen/moby/buildkit/v1/control_pb.ts";
import { Secrets } from "../../proto/gen/moby/buildkit/secrets/v1/secrets_pb.ts";
import { DefinitionSchema } from "../../proto/gen/pb/ops_pb.ts";
import type { DisplayMode } from "../../progress/display/index.ts";
import type { SolveStatus } from "../../progress/types.ts";
import { dial } from "./dial.ts";
import { readStdin } from "./io.ts";
import { parseCSV, parseKeyValue } from "./opts.ts";

export interface BuildFlags {
  addr: string;
  frontend?: string;
  opt: string[];
  local: string[];
  ociLayout?: string[];
  output: string[];
  secret: string[];
  ssh: string[];
  noCache?: boolean;
  progress: string;
  trace?: string;
  metadataFile?: string;
  exportCache: string[];
  importCache: string[];
  allow: string[];
  ref?: string;
}

/** Extra session services a client adds (file sync for --local, file receive for outputs). */
export type SessionExtension = (
  r: ConnectRouter,
  ctx: {
    locals: Record<string, string>;
    outputs: { type: string; attrs: Record<string, string> }[];
    sshAgents: Record<string, string>;
  },
) => void;
const extensions: SessionExtension[] = [];

/** Registers session services for every build (the file sync and output receivers do). */
export function addSessionExtension(e: SessionExtension): void {
  extensions.push(e);
}

export async function build(f: BuildFlags): Promise<void> {
  const frontendAttrs: Record<string, string> = {};
  for (const o of f.opt) {
    const [k, v] = parseKeyValue(o, "--opt");
    frontendAttrs[k] = v;
  }
  if (f.noCache) frontendAttrs["no-cache"] = "";
  const locals: Record<string, string> = {};
  for (const l of f.local) {
    const [name, path] = parseKeyValue(l, "--local");
    locals[name] = resolve(path);
  }
  // An OCI layout is shared like a local dir, under a name of its own.
  for (const l of f.ociLayout ?? []) {
    const [name, path] = parseKeyValue(l, "--oci-layout");
    locals[`oci-layout:${name}`] = resolve(path);
  }
  const { stat } = await import("node:fs/promises");
  for (const [name, path] of Object.entries(locals)) {
    const st = await stat(path).catch(() => undefined);
    if (!st?.isDirectory()) throw new Error(`--local ${name}=${path}: not a directory`);
  }
  const outputs = f.output.map((o) => {
    const attrs = parseCSV(o, "--output");
    const type = attrs.type;
    if (!type)
      throw new Error(`--output ${JSON.stringify(o)}: type= is required (image, local, tar, oci, docker)`);
    delete attrs.type;
    return { type, attrs };
  });
  const secrets = new Map<string, () => Promise<Uint8Array>>();
  for (const s of f.secret) {
    const a = parseCSV(s, "--secret");
    const id = a.id;
    if (!id) throw new Error(`--secret ${JSON.stringify(s)}: id= is required`);
    if (a.env !== undefined) {
      const name = a.env;
      secrets.set(id, async () => {
        const v = process.env[name];
        if (v === undefined)
          throw new ConnectError(`secret ${id}: environment variable ${name} is not set`, Code.NotFound);
        return new TextEncoder().encode(v);
      });
    } else {
      const src = resolve(a.src ?? a.source ?? id);
      secrets.set(id, async () => new Uint8Array(await readFile(src)));
    }
  }
  const sshAgents: Record<string, string> = {};
  for (const spec of f.ssh) {
    const [id, path] = spec.includes("=")
      ? parseKeyValue(spec, "--ssh")
      : [spec, process.env.SSH_AUTH_SOCK ?? ""];
    if (!path) throw new Error(`--ssh ${spec}: no socket given and SSH_AUTH_SOCK is not set`);
    sshAgents[id] = resolve(path);
  }
  const cacheEntries = (list: string[], flag: string) =>
    list.map((c) => {
      const a = parseCSV(c, flag);
      const type = a.type ?? "";
      delete a.type;
      return { Type: type, Attrs: a };
    });

  let definition: Uint8Array | undefined;
  if (!f.frontend) {
    definition = await readStdin();
    // Refuse garbage here, with the same message dump-llb gives, before contacting the daemon.
    const { loadDefinition } = await import("../../llb/definition.ts");
    loadDefinition(definition);
  }

  const { Session } = await import("../../session/session.ts");
  const conn: Connection = await dial();
  const sharedKey = createHash("sha256")
    .update(
      `${hostname()}\n${Object.entries(locals)
        .sort()
        .map(([k, v]) => `${k}=${v}`)
        .join("\n")}`,
    )
    .digest("hex")
    .slice(0, 32);
  const session = new Session({
    name: "buildctl",
    sharedKey,
    routes: (r) => {
      r.rpc(Secrets.method.getSecret, async (req) => {
        const get = secrets.get(req.ID);
        if (!get)
          throw new ConnectError(
            `secret ${JSON.stringify(req.ID)} was not given to buildctl (--secret id=${req.ID},src=...)`,
            Code.NotFound,
          );
        return { data: await get() };
      });
      for (const e of extensions) e(r, { locals, outputs, sshAgents });
    },
  });
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const ref = f.ref ?? `buildctl-${Math.random().toString(36).slice(2, 12)}`;
  const sessionRun = session.run(conn.control, { signal: ac.signal }).catch(() => {});

  const { display } = await import("../../progress/display/index.ts");
  const { TraceRecorder } = await import("../../progress/trace.ts");
  const recorder = f.trace ? new TraceRecorder() : undefined;
  // A solve refused before its build started (a bad output) has no progress to wait for.
  const statusStop = new AbortController();
  let stream: AsyncIterable<SolveStatus> = statusStream(
    conn,
    ref,
    AbortSignal.any([ac.signal, statusStop.signal]),
  );
  if (recorder) stream = recorder.tap(stream);
  const shown = display(f.progress as DisplayMode, stream, process.stderr);

  let failure: unknown;
  let response: Record<string, string> = {};
  try {
    const res = await conn.control.solve(
      {
        Ref: ref,
        Definition: definition ? fromBinary(DefinitionSchema, definition) : undefined,
        Frontend: f.frontend ?? "",
        FrontendAttrs: frontendAttrs,
        Session: session.id,
        Exporters: outputs.map((o) => ({ Type: o.type, Attrs: o.attrs })),
        Entitlements: f.allow,
        Cache: {
          Exports: cacheEntries(f.exportCache, "--export-cache"),
          Imports: cacheEntries(f.importCache, "--import-cache"),
        },
      },
      { signal: ac.signal },
    );
    response = res.ExporterResponse;
  } catch (e) {
    failure = e;
    setTimeout(() => statusStop.abort(), 1000).unref();
  }
  const summary = await shown.catch(() => undefined);
  session.close();
  await sessionRun;
  conn.close();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  if (recorder && f.trace) {
    await recorder.writeFile(f.trace);
    process.stderr.write(`trace written to ${f.trace}\n`);
  }
  if (f.metadataFile) await writeFile(f.metadataFile, `${JSON.stringify(response, null, 2)}\n`);
  if (failure) {
    const msg = failure instanceof ConnectError ? failure.rawMessage : (failure as Error).message;
    void summary;
    throw new Error(msg);
  }
}

/** The daemon's Status stream as our progress batches; ends quietly when the build ends. */
async function* statusStream(
  conn: Connection,
  ref: string,
  signal: AbortSignal,
): AsyncGenerator<SolveStatus> {
  try {
    for await (const r of conn.control.status({ Ref: ref }, { signal })) yield fromStatusResponse(r);
  } catch (e) {
    if (signal.aborted) return;
    if (e instanceof ConnectError && (e.code === Code.NotFound || e.code === Code.Canceled)) return;
    throw e;
  }
}

export function fromStatusResponse(r: StatusResponse): SolveStatus {
  const ms = (t: Parameters<typeof timestampMs>[0] | undefined) => (t ? timestampMs(t) : undefined);
  return {
    vertexes: r.vertexes.map((v) => ({
      digest: v.digest,
      inputs: v.inputs,
      name: v.name,
      cached: v.cached || undefined,
      started: ms(v.started),
      completed: ms(v.completed),
      error: v.error || undefined,
      progressGroup: v.progressGroup
        ? { id: v.progressGroup.id, name: v.progressGroup.name, weak: v.progressGroup.weak }
        : undefined,
    })),
    statuses: r.statuses.map((s) => ({
      id: s.ID,
      vertex: s.vertex,
      name: s.name,
      current: Number(s.current),
      total: Number(s.total),
      timestamp: ms(s.timestamp) ?? Date.now(),
      started: ms(s.started),
      completed: ms(s.completed),
    })),
    logs: r.logs.map((l) => ({
      vertex: l.vertex,
      stream: Number(l.stream),
      data: l.msg,
      timestamp: ms(l.timestamp) ?? Date.now(),
    })),
    warnings: r.warnings.map((w) => ({
      vertex: w.vertex,
      level: Number(w.level),
      short: new TextDecoder().decode(w.short),
      detail: w.detail.map((d) => new TextDecoder().decode(d)),
      url: w.url || undefined,
    })),
  };
}
