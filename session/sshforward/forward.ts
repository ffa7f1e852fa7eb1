// SSH agent forwarding through the session (BuildKit's moby.sshforward.v1.SSH): the client
// serves its agent socket(s) by id; the daemon listens on a unix socket of its own for a build
// step and carries each connection to the client's agent as one ForwardAgent stream, the agent
// id in the "buildkit.ssh.id" header. Only bytes move: keys never leave the client.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { SSH } from "../../proto/gen/moby/sshforward/v1/ssh_pb.ts";
import type { SessionCaller } from "../manager.ts";

export const SSH_ID_HEADER = "buildkit.ssh.id";
export const DEFAULT_SSH_ID = "default";
const CHECK_METHOD = "/moby.sshforward.v1.SSH/CheckAgent";

/** Client side: serves agents by id (id → unix socket path of an ssh-agent). */
export function sshRoutes(agents: Record<string, string>): (router: ConnectRouter) => void {
  return (router) => {
    router.rpc(SSH.method.checkAgent, async (req) => {
      const id = req.ID || DEFAULT_SSH_ID;
      if (!agents[id])
        throw new ConnectError(
          `no ssh agent ${JSON.stringify(id)} was given to the client (--ssh ${id}=SOCKET)`,
          Code.NotFound,
        );
      return {};
    });
    router.rpc(SSH.method.forwardAgent, (requests, ctx) => {
      const id = ctx.requestHeader.get(SSH_ID_HEADER) || DEFAULT_SSH_ID;
      const path = agents[id];
      if (!path)
        throw new ConnectError(`no ssh agent ${JSON.stringify(id)} was given to the client`, Code.NotFound);
      return pipeSocket(createConnection(path), requests, ctx.signal);
    });
  };
}

/** Bytes from `incoming` go to the socket; the socket's bytes come back as messages. */
async function* pipeSocket(
  sock: Socket,
  incoming: AsyncIterable<{ data: Uint8Array }>,
  signal: AbortSignal,
): AsyncGenerator<{ data: Uint8Array }> {
  const onAbort = () => sock.destroy();
  signal.addEventListener("abort", onAbort, { once: true });
  const writing = (async () => {
    for await (const m of incoming) {
      if (m.data.length > 0 && !sock.write(m.data))
        await new Promise<void>((r) => sock.once("drain", () => r()));
    }
    sock.end();
  })().catch(() => sock.destroy());
  try {
    for await (const chunk of sock) yield { data: new Uint8Array(chunk as Buffer) };
  } finally {
    signal.removeEventListener("abort", onAbort);
    sock.destroy();
    await writing;
  }
}

/** Whether the client offers agent `id`. */
export async function hasAgent(caller: SessionCaller, id: string, signal: AbortSignal): Promise<boolean> {
  if (!caller.supports(CHECK_METHOD)) return false;
  try {
    await caller.callerFor(SSH).checkAgent({ ID: id }, { signal });
    return true;
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.NotFound) return false;
    throw e;
  }
}

/**
 * Daemon side: a unix socket at `path` whose connections reach the client's agent `id`.
 * `close()` stops listening and ends every forwarded connection.
 */
export async function listenForAgent(
  caller: SessionCaller,
  id: string,
  path: string,
): Promise<{ path: string; close(): Promise<void> }> {
  const conns = new Set<Socket>();
  const server: Server = createServer((sock) => {
    conns.add(sock);
    const ac = new AbortController();
    sock.on("close", () => {
      conns.delete(sock);
      ac.abort();
    });
    const outgoing = (async function* () {
      for await (const chunk of sock) yield { data: new Uint8Array(chunk as Buffer) };
    })();
    (async () => {
      const replies = caller
        .callerFor(SSH)
        .forwardAgent(outgoing, { signal: ac.signal, headers: { [SSH_ID_HEADER]: id } });
      for await (const m of replies) {
        if (m.data.length > 0 && !sock.write(m.data))
          await new Promise<void>((r) => sock.once("drain", () => r()));
      }
      sock.end();
    })().catch(() => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.destroy();
        server.close(() => resolve());
      }),
  };
}
