// Session services buildctl offers beyond secrets: file sync for --local and receivers for
// outputs. Each registers itself with addSessionExtension when it lands.
import {
  type FileSendTarget,
  checkDestination,
  fileTarget,
  serveFileSend,
  streamTarget,
} from "../../session/filesend/receive.ts";
import { addSessionExtension } from "./build.ts";

/** Output types whose stream the client writes to `dest` (a file, or stdout for "-"). */
const FILE_OUTPUTS = new Set(["tar", "oci", "docker"]);

/**
 * Receivers for outputs by type, keyed by the output's index (the daemon's exporter id). Other
 * output kinds (a local directory) add theirs here, so that one FileSend service serves all.
 */
export const outputReceivers = new Map<
  string,
  (attrs: Record<string, string>, index: number) => FileSendTarget
>();

for (const type of FILE_OUTPUTS) {
  outputReceivers.set(type, (attrs, index) => {
    const dest = attrs.dest;
    const what = `--output type=${type} (output ${index + 1})`;
    if (dest === undefined || dest === "-") {
      if (dest === undefined && process.stdout.isTTY && type !== "docker") {
        throw new Error(`${what}: dest= is required, refusing to write a tarball to the terminal`);
      }
      return streamTarget(process.stdout);
    }
    checkDestination(dest, what);
    return fileTarget(dest);
  });
}

addSessionExtension((r, { outputs }) => {
  const targets = new Map<number, FileSendTarget>();
  outputs.forEach((o, i) => {
    const make = outputReceivers.get(o.type);
    if (make) targets.set(i, make(o.attrs, i));
  });
  if (targets.size > 0) serveFileSend(r, targets);
});
