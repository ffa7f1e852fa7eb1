// Session services buildctl offers beyond secrets: file sync for --local and receivers for
// outputs. Each registers itself with addSessionExtension.
import {
  type FileSendTarget,
  checkDestination,
  fileTarget,
  serveFileSend,
  streamTarget,
} from "../../session/filesend/receive.ts";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { Auth } from "../../proto/gen/moby/filesync/v1/auth_pb.ts";
import { extractTarget } from "../../session/filesend/extract.ts";
import { fileSyncRoutes } from "../../session/filesync/send.ts";
import { sshRoutes } from "../../session/sshforward/forward.ts";
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

outputReceivers.set("local", (attrs, index) => {
  if (!attrs.dest) throw new Error(`--output type=local (output ${index + 1}): dest= is required`);
  return extractTarget(attrs.dest);
});

addSessionExtension((r, { outputs }) => {
  const targets = new Map<number, FileSendTarget>();
  outputs.forEach((o, i) => {
    const make = outputReceivers.get(o.type);
    if (make) targets.set(i, make(o.attrs, i));
  });
  if (targets.size > 0) serveFileSend(r, targets);
});

/**
 * Registry logins for the daemon's pushes and pulls, from docker's config.json ($DOCKER_CONFIG or
 * ~/.docker): `auth` (base64 user:password) or `identitytoken` entries. Credential helpers
 * (credsStore) are not run.
 */
export async function dockerConfigCredentials(
  host: string,
): Promise<{ Username: string; Secret: string } | undefined> {
  const dir = process.env.DOCKER_CONFIG ?? join(homedir(), ".docker");
  let config: {
    auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  };
  try {
    config = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
  } catch {
    return undefined;
  }
  const keys =
    host === "docker.io" || host === "registry-1.docker.io"
      ? ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
      : [host, `https://${host}`, `http://${host}`];
  for (const k of keys) {
    const e = config.auths?.[k];
    if (!e) continue;
    if (e.identitytoken) return { Username: "", Secret: e.identitytoken };
    if (e.auth) {
      const plain = Buffer.from(e.auth, "base64").toString("utf8");
      const colon = plain.indexOf(":");
      if (colon > 0) return { Username: plain.slice(0, colon), Secret: plain.slice(colon + 1) };
    }
    if (e.username && e.password) return { Username: e.username, Secret: e.password };
  }
  return undefined;
}

addSessionExtension((r) => {
  r.rpc(Auth.method.credentials, async (req) => {
    const c = await dockerConfigCredentials(req.Host);
    if (!c) throw new ConnectError(`no login for ${req.Host} in docker's config.json`, Code.NotFound);
    return c;
  });
});

addSessionExtension((r, { locals }) => {
  if (Object.keys(locals).length > 0) fileSyncRoutes(locals)(r);
});

addSessionExtension((r, { sshAgents }) => {
  if (Object.keys(sshAgents).length > 0) sshRoutes(sshAgents)(r);
});
