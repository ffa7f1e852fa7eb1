// The `tar` exporter: the result's files as one tar stream for the client, exactly as they are
// in the result (owners, modes, times, symlinks, hard links, xattrs). A multi-platform result
// puts each platform under its own directory (linux_amd64/...), as BuildKit's platform-split.
import { TAR_END } from "../archive/tar-header.ts";
import { treeTar } from "../archive/write.ts";
import type { ImmutableRef } from "../cache/types.ts";
import type { FrontendResult } from "../frontend/types.ts";
import { sendToClient } from "../session/filesend/send.ts";
import { platformsOf } from "./image-build.ts";
import { whileMounted } from "./mounted.ts";
import { bool } from "./options.ts";
import type { ExportContext, Exporter } from "./types.ts";

const KNOWN = new Set(["dest", "platform-split"]);

/** `type=tar`. */
export class TarExporter implements Exporter {
  private readonly mountBase: string | undefined;

  constructor(opts: { mountBase?: string } = {}) {
    this.mountBase = opts.mountBase;
  }

  checkAttrs(attrs: Record<string, string>): void {
    for (const k of Object.keys(attrs)) {
      if (!KNOWN.has(k))
        throw new Error(
          `unknown attribute ${JSON.stringify(k)}; the tar exporter accepts dest and platform-split`,
        );
    }
    bool(attrs, "platform-split", true);
  }

  async export(
    result: FrontendResult,
    attrs: Record<string, string>,
    ctx: ExportContext,
  ): Promise<Record<string, string>> {
    this.checkAttrs(attrs);
    const multi = result.refs !== undefined && Object.keys(result.refs).length > 1;
    if (multi && !bool(attrs, "platform-split", true)) {
      throw new Error("platform-split=false: the result has several platforms, whose files would collide");
    }
    const parts = platformsOf(result)
      .filter((p) => p.ref !== undefined)
      .map((p) => ({ ref: p.ref as ImmutableRef, prefix: multi ? p.id.replaceAll("/", "_") : undefined }));
    const mountBase = this.mountBase;
    const signal = ctx.signal;
    const stream = async function* (): AsyncGenerator<Buffer> {
      for (const p of parts) {
        yield* whileMounted(await p.ref.mount({ readonly: true }), mountBase, (dir) =>
          treeTar(dir, { prefix: p.prefix, end: false, signal }),
        );
      }
      yield TAR_END;
    };
    const started = Date.now();
    const id = "sending tarball";
    const sent = await sendToClient(ctx.session?.caller, stream(), {
      exporterId: ctx.exporterId ?? 0,
      signal,
      onProgress: (current) => ctx.log.status({ id, name: id, current, total: 0, started }),
    });
    ctx.log.status({
      id,
      name: id,
      current: sent,
      total: sent,
      started,
      completed: Date.now(),
    });
    return {};
  }
}
