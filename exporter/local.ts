// The `local` exporter: the result's files written into a directory on the client. The files
// travel as one tar stream (the `tar` exporter's) and the client unpacks them, owned by the user
// running buildctl, as BuildKit's local exporter leaves them.
import { TarExporter } from "./tar.ts";

const KNOWN = new Set(["dest", "platform-split"]);

/** `type=local,dest=DIR`. */
export class LocalExporter extends TarExporter {
  override checkAttrs(attrs: Record<string, string>): void {
    for (const k of Object.keys(attrs)) {
      if (!KNOWN.has(k))
        throw new Error(
          `unknown attribute ${JSON.stringify(k)}; the local exporter accepts dest and platform-split`,
        );
    }
    if (!attrs.dest) throw new Error("dest= is required: the directory to write the result into");
  }
}
