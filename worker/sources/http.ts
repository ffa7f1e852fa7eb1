// http(s):// sources: the key is the body's digest (plus file name, mode and owner), learned
// from the checksum alone when the op gives one, else by a (conditional) download.
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import {
  type HttpFetcher,
  httpCacheKey,
  httpFileName,
  httpMtime,
  parseHttpIdentifier,
} from "../../source/http/index.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import type { SourceHandler } from "./registry.ts";
import { snapshotFromDir } from "./snapshot-dir.ts";

export class HttpSource implements SourceHandler {
  private readonly http: HttpFetcher;

  constructor(http: HttpFetcher) {
    this.http = http;
  }

  resolve(w: OCIWorker, _v: VertexOp, src: SourceOp): OpSolver {
    const id = parseHttpIdentifier(src.identifier, src.attrs);
    let fetched: ReturnType<HttpFetcher["fetch"]> | undefined;
    const fetch = (ctx: OpContext) => {
      const started = Date.now();
      fetched ??= this.http.fetch(id.url, {
        checksum: id.checksum,
        signal: ctx.signal,
        onProgress: (p) =>
          ctx.log.status({
            id: id.url,
            name: `downloading ${id.url}`,
            current: p.current,
            total: p.total ?? 0,
            started,
          }),
      });
      return fetched;
    };
    return {
      cacheMap: async (ctx): Promise<CacheMap> => {
        const res = await fetch(ctx);
        const filename = httpFileName(id, res);
        const digest = httpCacheKey({
          digest: res.digest,
          filename,
          perm: id.perm,
          uid: id.uid,
          gid: id.gid,
          lastModified: id.checksum ? undefined : res.lastModified,
        });
        return { digest, deps: [] };
      },
      exec: async (ctx): Promise<WorkerRef[]> => {
        const res = await fetch(ctx);
        const filename = httpFileName(id, res);
        const ref = await snapshotFromDir(w, { description: `http ${id.url}` }, (dir) =>
          this.http
            .writeFile(res.digest, dir, {
              filename,
              perm: id.perm,
              uid: id.uid,
              gid: id.gid,
              mtime: httpMtime(res.lastModified),
            })
            .then(() => {}),
        );
        return [ref];
      },
    };
  }
}
