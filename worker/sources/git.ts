// git:// sources: the key is the resolved commit (plus keepGitDir and subdir), so a branch that
// moves re-runs what depends on it and nothing else; the checkout goes into a fresh snapshot.
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
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

  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver {
    const id = parseGitIdentifier(src.identifier, src.attrs);
    if (
      id.mountSshSock &&
      !id.remote.startsWith("https://") &&
      !id.remote.startsWith("http://") &&
      !id.remote.startsWith("git://")
    ) {
      // ssh remotes need the client's agent forwarded, which this daemon does not do yet.
      throw new Error(
        `${v.name}: git over ssh (${id.remote}) needs ssh agent forwarding, which this daemon does not support yet`,
      );
    }
    let commitP: Promise<{ commit: string; auth: Awaited<ReturnType<typeof resolveGitAuth>> }> | undefined;
    const resolveCommit = (ctx: OpContext) => {
      commitP ??= (async () => {
        const auth = ctx.session
          ? await resolveGitAuth(id, (name) => ctx.session!.getSecret(name, ctx.signal))
          : undefined;
        const commit = await this.git.resolve(id.remote, id.ref, {
          auth,
          signal: ctx.signal,
          knownHosts: id.knownSshHosts,
          output: ctx.log,
        });
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
            this.git
              .checkout(id.remote, commit, id.ref, dir, {
                keepGitDir: id.keepGitDir,
                subdir: id.subdir,
                auth,
                signal: ctx.signal,
                output: ctx.log,
              })
              .then(() => {}),
        );
        return [ref];
      },
    };
  }
}
