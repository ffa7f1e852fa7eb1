// Pushing a built image: every blob the registry lacks (HEAD first; cross-repository mounts
// from where a blob was pulled or pushed before), then the manifests, then the index or the
// tag. Credentials come from the build's session (BuildKit's Auth service), bytes are shown
// as progress, and a blob the registry took is labelled so later pushes can mount it.
import { request as httpsRequest } from "node:https";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ContentStore } from "../content/store.ts";
import { parseImageRef } from "../llb/imageref.ts";
import { Auth } from "../proto/gen/moby/filesync/v1/auth_pb.ts";
import {
  type CredentialsProvider,
  type Descriptor,
  RegistryClient,
  SOURCE_LABEL_PREFIX,
} from "../source/registry/index.ts";
import type { RegistryConfig } from "../control/config.ts";
import type { Digest } from "../util/digest.ts";
import { Semaphore } from "../util/semaphore.ts";
import type { SessionAccess } from "../worker/types.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import type { BuiltImage } from "./image-build.ts";

/** How many blobs go up at once. */
const PARALLEL_BLOBS = 3;
const AUTH_METHOD = "/moby.filesync.v1.Auth/Credentials";

/** What one push did, for tests and the progress summary. */
export type PushReport = {
  /** Blobs by what happened to them. */
  uploaded: Digest[];
  mounted: Digest[];
  existing: Digest[];
  /** Bytes sent in uploads. */
  bytesUploaded: number;
  /** The digest the name now points to. */
  digest: Digest;
};

/** Registry credentials from the client's session (docker's login), when it offers them. */
export function sessionCredentials(session: SessionAccess | undefined): CredentialsProvider | undefined {
  const caller = session?.caller;
  if (!caller?.supports(AUTH_METHOD)) return undefined;
  return async (host) => {
    try {
      const res = await caller.callerFor(Auth).credentials({ Host: host }, { signal: caller.signal });
      if (res.Username === "" && res.Secret === "") return undefined;
      if (res.Username === "") return { identityToken: res.Secret };
      return { username: res.Username, password: res.Secret };
    } catch (e) {
      if (e instanceof ConnectError && (e.code === Code.NotFound || e.code === Code.Unimplemented))
        return undefined;
      throw new Error(`asking the client for credentials for ${host}: ${(e as Error).message}`);
    }
  };
}

/** Options of {@link pushImage}. */
export type PushOptions = {
  /** Push the manifest by digest only, leaving tags alone. */
  byDigest: boolean;
  credentials?: CredentialsProvider;
  log: VertexLog;
  signal: AbortSignal;
};

/** Pushes `image` to `name` ("registry/repo:tag"). */
export async function pushImage(
  registry: RegistryClient,
  content: ContentStore,
  name: string,
  image: BuiltImage,
  opts: PushOptions,
): Promise<PushReport> {
  const ref = parseImageRef(name);
  const repo = `${ref.domain}/${ref.path}`;
  const report: PushReport = {
    uploaded: [],
    mounted: [],
    existing: [],
    bytesUploaded: 0,
    digest: image.root.digest,
  };
  const op = { credentials: opts.credentials, signal: opts.signal };
  const limit = new Semaphore(PARALLEL_BLOBS);
  const pushBlob = (d: Descriptor) => limit.run(() => pushOne(d), opts.signal);
  const pushOne = async (d: Descriptor) => {
    const started = Date.now();
    // The progress display shows the id: it says what is happening.
    const id = `pushing ${d.digest.slice(0, 19)}`;
    const status = (current: number, completed?: number) =>
      opts.log.status({
        id,
        name: id,
        current,
        total: d.size,
        started,
        completed,
      });
    const info = await content.info(d.digest);
    const mountFrom = sourcesOf(info?.labels ?? {}, ref.domain);
    const r = await registry.pushBlob(repo, d, () => content.readStream(d.digest), {
      ...op,
      mountFrom,
      onProgress: (current) => status(current),
    });
    status(d.size, Date.now());
    if (r.outcome === "uploaded") {
      report.uploaded.push(d.digest);
      report.bytesUploaded += d.size;
    } else if (r.outcome === "mounted") report.mounted.push(d.digest);
    else report.existing.push(d.digest);
    await labelSource(content, d.digest, ref.domain, ref.path);
  };
  // Layers and configs first (manifests refer to them), then each manifest, then the root.
  const manifestDigests = new Set(image.manifests.map((m) => m.descriptor.digest));
  const leaves = uniqueBy(
    image.blobs.filter((b) => !manifestDigests.has(b.digest) && b.digest !== image.index?.digest),
    (b) => b.digest,
  );
  await Promise.all(leaves.map(pushBlob));
  const tag = opts.byDigest ? undefined : ref.tag;
  for (const m of image.manifests) {
    const bytes = await content.readAll(m.descriptor.digest);
    const isRoot = image.index === undefined;
    const target = isRoot && tag ? `${repo}:${tag}` : `${repo}@${m.descriptor.digest}`;
    await registry.pushManifest(target, m.descriptor.mediaType, bytes, op);
  }
  if (image.index) {
    const bytes = await content.readAll(image.index.digest);
    const target = tag ? `${repo}:${tag}` : `${repo}@${image.index.digest}`;
    await registry.pushManifest(target, image.index.mediaType, bytes, op);
  }
  return report;
}

/** Repositories of `host` a blob is known to be in (containerd's distribution.source labels). */
function sourcesOf(labels: Record<string, string>, host: string): string[] {
  const v = labels[`${SOURCE_LABEL_PREFIX}${host}`];
  return v ? v.split(",").map((r) => `${host}/${r}`) : [];
}

async function labelSource(content: ContentStore, digest: Digest, host: string, path: string): Promise<void> {
  const key = `${SOURCE_LABEL_PREFIX}${host}`;
  const info = await content.info(digest);
  const repos = new Set((info?.labels[key] ?? "").split(",").filter((r) => r !== ""));
  if (repos.has(path)) return;
  repos.add(path);
  await content.setLabels(digest, { [key]: [...repos].sort().join(",") });
}

function uniqueBy<T>(items: T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((i) => {
    const k = key(i);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * A client for `registry.insecure=true` pushes to `host`: TLS without certificate checks, or
 * plain http when the registry does not speak TLS at all (found out with one probe).
 */
export async function insecureRegistryClient(
  host: string,
  base: { hosts: Record<string, RegistryConfig>; store: ContentStore },
  signal: AbortSignal,
): Promise<RegistryClient> {
  const tls = await speaksTLS(host, signal);
  const hosts = {
    ...base.hosts,
    [host]: { ...{ mirrors: [], ca: [] }, ...base.hosts[host], insecure: true, http: !tls },
  };
  return new RegistryClient({ hosts, store: base.store });
}

function speaksTLS(host: string, signal: AbortSignal): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const req = httpsRequest(
      `https://${host}/v2/`,
      { method: "GET", rejectUnauthorized: false, signal },
      (res) => {
        res.resume();
        resolve(true);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
    // Anything but a TLS answer (a plain http server, a reset) means http; a dead host fails later, clearly.
    req.on("error", () => resolve(false));
    req.end();
  });
}
