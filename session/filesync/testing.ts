// Test fixtures for file sync: a daemon with only Control.Session on a unix socket in a temp dir,
// a client connection to it, and sessions that share directories, all cleaned up by the test.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { type Connection, connect } from "../../client/connection.ts";
import { startServer } from "../../control/server.ts";
import { Control } from "../../proto/gen/moby/buildkit/v1/control_pb.ts";
import { type SessionCaller, SessionManager } from "../manager.ts";
import { Session } from "../session.ts";

interface Hooks {
  after: (fn: () => unknown) => void;
}

/** A daemon end and a client connection over a real unix socket. */
export interface SessionDaemon {
  dir: string;
  sock: string;
  manager: SessionManager;
  conn: Connection;
  /** Starts a client session with these services and returns the daemon's caller for it. */
  open(
    routes: (r: ConnectRouter) => void,
    opts?: { name?: string; sharedKey?: string },
  ): Promise<OpenSession>;
}

export interface OpenSession {
  session: Session;
  caller: SessionCaller;
  /** The client's run(): settles when the session ends. */
  running: Promise<void>;
}

/** Starts the daemon end in a fresh temp dir; everything is stopped and removed after the test. */
export async function startSessionDaemon(t: Hooks): Promise<SessionDaemon> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-filesync-"));
  const sock = join(dir, "buildd.sock");
  const manager = new SessionManager({ healthIntervalMs: 0 });
  const server = await startServer({
    addresses: [`unix://${sock}`],
    routes: (r) => r.service(Control, { session: manager.handleSession }),
  });
  const conn = connect(`unix://${sock}`);
  const sessions: OpenSession[] = [];
  t.after(async () => {
    for (const s of sessions) s.session.close();
    await Promise.allSettled(sessions.map((s) => s.running));
    conn.close();
    manager.closeAll();
    await server.close({ graceMs: 1000 });
    await rm(dir, { recursive: true, force: true });
  });
  return {
    dir,
    sock,
    manager,
    conn,
    open: async (routes, opts = {}) => {
      const session = new Session({ routes, name: opts.name ?? "test", sharedKey: opts.sharedKey ?? "" });
      const running = session.run(conn.control);
      running.catch(() => {}); // asserted where it matters
      const s = { session, running, caller: await manager.get(session.id, { timeoutMs: 20_000 }) };
      sessions.push(s);
      return s;
    },
  };
}
