// Test helpers for exporters: deps on a real test worker, an export context that records
// progress, a real client session (outputs to files, registry credentials), and image tools
// (skopeo, umoci, runc) run asynchronously so in-process registries keep serving.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connect } from "../client/connection.ts";
import { sessionAccess } from "../control/session-access.ts";
import { startServer } from "../control/server.ts";
import { emptyStatus, type SolveStatus } from "../progress/types.ts";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { Auth } from "../proto/gen/moby/filesync/v1/auth_pb.ts";
import { type FileSendTarget, serveFileSend } from "../session/filesend/receive.ts";
import { SessionManager } from "../session/manager.ts";
import { Session } from "../session/session.ts";
import { RegistryClient } from "../source/registry/index.ts";
import type { TestWorker } from "../worker/testing.ts";
import type { SessionAccess } from "../worker/types.ts";
import { VertexLog } from "../worker/vertex-log.ts";
import type { ImageExporterDeps } from "./image.ts";
import { ImageStore } from "./image-store.ts";
import type { ExportContext } from "./types.ts";

export const exec = promisify(execFile);

/** A temp dir removed when the test ends. */
export async function tempDir(t: TestContext, name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `buildd-export-${name}-`));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Image exporter deps on a test worker, with an image store in its own database. */
export async function exporterDeps(t: TestContext, w: TestWorker): Promise<ImageExporterDeps> {
  const dir = await tempDir(t, "images");
  const db = new DatabaseSync(join(dir, "images.db"));
  const registry = new RegistryClient({ store: w.worker.content });
  t.after(() => {
    registry.close();
    db.close();
  });
  return {
    cache: w.cache,
    content: w.worker.content,
    registry,
    registryHosts: {},
    images: new ImageStore(db, w.worker.content),
    mountBase: join(w.root, "mnt"),
  };
}

/** An export context whose progress is collected in `progress`. */
export function exportContext(extra: Partial<ExportContext> = {}): ExportContext & { progress: SolveStatus } {
  const progress = emptyStatus();
  const log = new VertexLog(
    "export",
    new Set([
      (s: Partial<SolveStatus>) => {
        progress.statuses.push(...(s.statuses ?? []));
        progress.warnings.push(...(s.warnings ?? []));
      },
    ]),
  );
  return { log, signal: AbortSignal.timeout(300_000), progress, ...extra };
}

/** A real client session: FileSend targets by exporter id and, optionally, registry credentials. */
export async function clientSession(
  t: TestContext,
  opts: {
    targets?: Map<number, FileSendTarget>;
    credentials?: Record<string, { username: string; password: string }>;
  },
): Promise<SessionAccess> {
  const dir = await tempDir(t, "session");
  const manager = new SessionManager({ healthIntervalMs: 0 });
  const sock = join(dir, "sock");
  const server = await startServer({
    addresses: [`unix://${sock}`],
    routes: (r) => r.service(Control, { session: manager.handleSession }),
  });
  const conn = connect(`unix://${sock}`);
  const routes = (r: ConnectRouter) => {
    if (opts.targets) serveFileSend(r, opts.targets);
    if (opts.credentials) {
      const creds = opts.credentials;
      r.rpc(Auth.method.credentials, (req) => {
        const c = creds[req.Host];
        if (!c) throw new ConnectError(`no login for ${req.Host}`, Code.NotFound);
        return { Username: c.username, Secret: c.password };
      });
    }
  };
  const session = new Session({ routes });
  const running = session.run(conn.control).catch(() => {});
  t.after(async () => {
    session.close();
    await running;
    conn.close();
    manager.closeAll();
    await server.close({ graceMs: 500 });
  });
  const caller = await manager.get(session.id);
  return sessionAccess(caller, (id) => manager.get(id));
}

/** skopeo with the test registry's plain http allowed. */
export async function skopeo(args: string[]): Promise<string> {
  const { stdout } = await exec("skopeo", args, { maxBuffer: 64 << 20 });
  return stdout;
}

/** Unpacks `layout:tag` with umoci and runs its configured process with runc; returns stdout. */
export async function runImage(t: TestContext, layout: string, tag: string): Promise<string> {
  const dir = await tempDir(t, "bundle");
  const bundle = join(dir, "bundle");
  await exec("umoci", ["unpack", "--image", `${layout}:${tag}`, bundle]);
  // umoci asks for a terminal; a test has none.
  const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8"));
  spec.process.terminal = false;
  await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
  const id = `buildd-export-${Math.random().toString(36).slice(2)}`;
  const runcRoot = join(dir, "runc");
  try {
    const { stdout } = await exec("runc", ["--root", runcRoot, "run", "--bundle", bundle, id], {
      timeout: 60_000,
    });
    return stdout;
  } finally {
    await exec("runc", ["--root", runcRoot, "delete", "--force", id]).catch(() => {});
  }
}
