// git:// sources: the key is the resolved commit (plus keepGitDir and subdir), so a branch that
// moves re-runs what depends on it and nothing else; the checkout goes into a fresh snapshot.
import { join } from "node:path";
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import { DEFAULT_SSH_ID, hasAgent, listenForAgent } from "../../session/sshforward/forward.ts";
import { type GitFetcher, gitCacheKey, parseGitIdentifier, resolveGitAuth } from "../../source/git/index.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import type { SourceHandler } from "./registry.ts";
import { snapshotFromDir } from "./snapshot-dir.ts";

export class GitSource implements SourceHandler {
  private readonly git: GitFetcher;

  constructor(git: GitFetcher) {
    this.git = git;
  }

  resolve(w: OCIWorker, _v: VertexOp, src: SourceOp): OpSolver {
    const id = parseGitIdentifier(src.identifier, src.attrs);
    const overSsh = !/^(https?|git):\/\//.test(id.remote);
    let commitP: Promise<{ commit: string; auth: Awaited<ReturnType<typeof resolveGitAuth>> }> | undefined;
    const resolveCommit = (ctx: OpContext) => {
      commitP ??= (async () => {
        const auth = ctx.session
          ? await resolveGitAuth(id, (name) => ctx.session!.getSecret(name, ctx.signal))
          : undefined;
        const commit = await withAgent(w, ctx, overSsh, id.mountSshSock, (sshAuthSock) =>
          this.git.resolve(id.remote, id.ref, {
            auth,
            signal: ctx.signal,
            knownHosts: id.knownSshHosts,
            sshAuthSock,
            output: ctx.log,
          }),
        );
        return { commit, auth };
      })();
      return commitP;
    };
    return {
      cacheMap: async (ctx): Promise<CacheMap> => {
        const { commit } = await resolveCommit(ctx);
        return { digest: gitCacheKey({ commit, keepGitDir: id.keepGitDir, subdir: id.subdir }), deps: [] };
      },
      exec: async (ctx): Promise<WorkerRef[]> => {
        const { commit, auth } = await resolveCommit(ctx);
        const ref = await snapshotFromDir(
          w,
          {
            description: `git ${id.remote}#${id.ref || "HEAD"} (${commit.slice(0, 12)})`,
            recordType: "source.git.checkout",
          },
          (dir) =>
            withAgent(w, ctx, overSsh, id.mountSshSock, (sshAuthSock) =>
              this.git.checkout(id.remote, commit, id.ref, dir, {
                keepGitDir: id.keepGitDir,
                subdir: id.subdir,
                auth,
                sshAuthSock,
                signal: ctx.signal,
                output: ctx.log,
              }),
            ).then(() => {}),
        );
        return [ref];
      },
    };
  }
}

/**
 * Runs `fn` with an agent socket reaching the client's ssh agent when the remote is ssh (git then
 * authenticates with the client's keys, which never leave the client), else without one.
 */
async function withAgent<T>(
  w: OCIWorker,
  ctx: OpContext,
  overSsh: boolean,
  agentId: string,
  fn: (sshAuthSock: string | undefined) => Promise<T>,
): Promise<T> {
  if (!overSsh) return fn(undefined);
  const id = agentId || DEFAULT_SSH_ID;
  const caller = ctx.session?.caller;
  if (!caller || !(await hasAgent(caller, id, ctx.signal))) {
    throw new Error(
      `git over ssh needs the client's ssh agent ${JSON.stringify(id)}: pass --ssh ${id} to buildctl`,
    );
  }
  const agent = await listenForAgent(
    caller,
    id,
    join(w.mountRoot, `ssh-${Math.random().toString(36).slice(2, 12)}.sock`),
  );
  try {
    return await fn(agent.path);
  } finally {
    await agent.close();
  }
}
