// What builds may ask of the client's session (secrets now; files and auth through the same
// caller), and reading files of results for frontends.
import { readFile, open } from "node:fs/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ImmutableRef } from "../cache/types.ts";
import { resolveInRoot } from "../fsutil/resolve.ts";
import { Secrets } from "../proto/gen/moby/buildkit/secrets/v1/secrets_pb.ts";
import type { SessionCaller } from "../session/manager.ts";
import { withMounted } from "../snapshot/index.ts";
import type { SessionAccess, WorkerRef } from "../worker/types.ts";

/** The worker's view of one client session. */
export function sessionAccess(
  caller: SessionCaller,
  getSession: (id: string, signal: AbortSignal) => Promise<SessionCaller>,
): SessionAccess {
  return {
    id: caller.id,
    sharedKey: caller.sharedKey,
    caller,
    getSession,
    getSecret: async (id, signal) => {
      if (!caller.supports("/moby.buildkit.secrets.v1.Secrets/GetSecret")) return undefined;
      try {
        const res = await caller.callerFor(Secrets).getSecret({ ID: id }, { signal });
        return res.data;
      } catch (e) {
        if (e instanceof ConnectError && e.code === Code.NotFound) return undefined;
        throw new Error(`reading secret ${JSON.stringify(id)} from the client: ${(e as Error).message}`);
      }
    },
  };
}

const DEFAULT_READ_LIMIT = 16 << 20;

/** Reads a file of a result, resolved inside it (symlinks cannot lead out), bounded in size. */
export async function readRefFile(
  ref: WorkerRef,
  path: string,
  opts: { offset?: number; limit?: number } = {},
  mountBase?: string,
): Promise<Uint8Array> {
  const r = ref as ImmutableRef;
  const limit = opts.limit ?? DEFAULT_READ_LIMIT;
  return withMounted(
    await r.mount({ readonly: true }),
    async (dir) => {
      const p = await resolveInRoot(dir, path);
      if (!opts.offset) {
        const fh = await open(p, "r");
        try {
          const st = await fh.stat();
          if (!st.isFile()) throw new Error(`reading ${path}: not a regular file`);
          const buf = Buffer.alloc(Math.min(st.size, limit));
          const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
          return new Uint8Array(buf.subarray(0, bytesRead));
        } finally {
          await fh.close();
        }
      }
      const all = await readFile(p);
      return new Uint8Array(all.subarray(opts.offset, opts.offset + limit));
    },
    { readonly: true, inPlace: true, base: mountBase },
  );
}
