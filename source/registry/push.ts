// Pushing, for the image exporter: blobs the registry already has are skipped (HEAD), blobs in
// another repository of the same registry are mounted instead of uploaded when the registry
// allows it, the rest are uploaded in one PUT or, above the chunk size, in PATCH chunks. A
// failed upload starts over with a fresh upload session and a freshly opened stream.
import { Readable } from "node:stream";
import { type Digest, digestOf } from "../../util/digest.ts";
import { logger } from "../../util/log.ts";
import { RegistryError } from "./errors.ts";
import { discard, type HttpResponse, isTransientNetworkError } from "./http.ts";
import type { Descriptor } from "./manifest.ts";
import type { RepoRef } from "./pull.ts";
import { type Endpoint, networkError, type Operation, type Requester, statusError } from "./request.ts";

/** Opens a blob's bytes from the start; called again for every attempt. */
export type BlobOpener = () =>
  | Readable
  | AsyncIterable<Uint8Array>
  | Promise<Readable | AsyncIterable<Uint8Array>>;

/** Options of pushing a blob. */
export type PushBlobOptions = {
  /** Repositories of the same registry that may have the blob ("app-base", or "host/app-base"). */
  mountFrom?: string[];
  onProgress?: (current: number, total: number) => void;
  signal?: AbortSignal;
};

/** What pushing a blob did. */
export type PushBlobResult = {
  digest: Digest;
  size: number;
  outcome: "exists" | "mounted" | "uploaded";
  mountedFrom?: string;
};

/** Options of pushing a manifest: the tag to set, or push by digest (the default without a tag). */
export type PushManifestOptions = { tag?: string; signal?: AbortSignal };

/** Default size above which blobs go up in chunks (and the chunk size). */
export const DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024;
const log = logger({ component: "registry" });

/** Makes sure the registry has `desc` in `ref`'s repository. */
export async function pushBlob(
  requester: Requester,
  ref: RepoRef,
  desc: Descriptor,
  open: BlobOpener,
  opts: PushBlobOptions,
  chunkSize: number,
  op: Operation,
): Promise<PushBlobResult> {
  const ep: Endpoint = { host: ref.domain, repo: ref.path, mirror: false };
  const sources = mountSources(ref, opts.mountFrom ?? []);
  const scopes = [`repository:${ep.repo}:pull,push`, ...sources.map((s) => `repository:${s}:pull`)];
  const done = (outcome: PushBlobResult["outcome"], mountedFrom?: string): PushBlobResult => {
    opts.onProgress?.(desc.size, desc.size);
    return { digest: desc.digest, size: desc.size, outcome, ...(mountedFrom ? { mountedFrom } : {}) };
  };

  const head = await requester.send(
    ep,
    { method: "HEAD", path: `/v2/${ep.repo}/blobs/${desc.digest}`, scopes },
    op,
  );
  if (head.status === 200) {
    await discard(head);
    return done("exists");
  }
  if (head.status !== 404) throw await statusError(head, op, `checking for blob ${desc.digest}`);
  await discard(head);

  let location: URL | undefined;
  for (const from of sources) {
    const q = new URLSearchParams({ mount: desc.digest, from });
    const res = await requester.send(
      ep,
      { method: "POST", path: `/v2/${ep.repo}/blobs/uploads/?${q}`, scopes },
      op,
    );
    if (res.status === 201) {
      await discard(res);
      return done("mounted", from);
    }
    if (res.status === 202) {
      // Not mountable; the registry opened an ordinary upload session instead.
      location = uploadLocation(res, op);
      await discard(res);
      break;
    }
    log.debug("cross-repository mount refused", { from, repo: ep.repo, status: res.status });
    await discard(res);
  }

  for (let attempt = 1; ; attempt++) {
    try {
      location ??= await startUpload(requester, ep, scopes, op);
      const pushed =
        desc.size > chunkSize
          ? await uploadChunked(requester, ep, scopes, location, desc, open, chunkSize, opts, op)
          : await uploadMonolithic(requester, ep, scopes, location, desc, open, opts, op);
      const claimed = pushed.headers["docker-content-digest"];
      await discard(pushed);
      if (claimed !== undefined && claimed !== desc.digest) {
        throw new RegistryError(
          "digest-mismatch",
          `${op.doing}: the registry stored the upload as ${claimed}, not ${desc.digest}`,
        );
      }
      return done("uploaded");
    } catch (e) {
      location = undefined;
      if (isTransientNetworkError(e) && attempt < requester.retry.attempts) {
        log.debug("blob upload failed, starting over", { digest: desc.digest, attempt, error: e });
        await requester.backoff(attempt, undefined, op.signal);
        continue;
      }
      throw networkError(e, ep.host, op);
    }
  }
}

/** Puts a manifest under a tag, or by its digest; returns the digest. */
export async function pushManifest(
  requester: Requester,
  ref: RepoRef,
  mediaType: string,
  bytes: Buffer,
  opts: PushManifestOptions,
  op: Operation,
): Promise<Digest> {
  const digest = digestOf(bytes);
  if (ref.digest !== undefined && ref.digest !== digest) {
    throw new RegistryError(
      "invalid",
      `${op.doing}: the reference names ${ref.digest} but the manifest's digest is ${digest}`,
    );
  }
  const reference = opts.tag ?? ref.digest ?? ref.tag ?? digest;
  const ep: Endpoint = { host: ref.domain, repo: ref.path, mirror: false };
  const res = await requester.send(
    ep,
    {
      method: "PUT",
      path: `/v2/${ep.repo}/manifests/${reference}`,
      headers: { "content-type": mediaType },
      body: bytes,
      scopes: [`repository:${ep.repo}:pull,push`],
    },
    op,
  );
  if (res.status !== 201 && res.status !== 200)
    throw await statusError(res, op, `putting manifest ${reference}`);
  const claimed = res.headers["docker-content-digest"];
  await discard(res);
  if (claimed !== undefined && claimed !== digest) {
    throw new RegistryError(
      "digest-mismatch",
      `${op.doing}: the registry stored the manifest as ${claimed}, not ${digest}`,
    );
  }
  return digest;
}

/** Repository paths on the same registry to try mounting from ("host/repo" of another host is skipped). */
function mountSources(ref: RepoRef, mountFrom: string[]): string[] {
  const out: string[] = [];
  for (const m of mountFrom) {
    const slash = m.indexOf("/");
    const first = slash < 0 ? "" : m.slice(0, slash);
    const isHost = first.includes(".") || first.includes(":") || first === "localhost";
    if (isHost && first !== ref.domain) continue;
    const path = isHost ? m.slice(slash + 1) : m;
    if (path !== ref.path && path !== "" && !out.includes(path)) out.push(path);
  }
  return out;
}

async function startUpload(
  requester: Requester,
  ep: Endpoint,
  scopes: string[],
  op: Operation,
): Promise<URL> {
  const res = await requester.send(ep, { method: "POST", path: `/v2/${ep.repo}/blobs/uploads/`, scopes }, op);
  if (res.status !== 202) throw await statusError(res, op, "starting an upload");
  const location = uploadLocation(res, op);
  await discard(res);
  return location;
}

function uploadLocation(res: HttpResponse, op: Operation): URL {
  const location = res.headers.location;
  if (location === undefined)
    throw new RegistryError("server", `${op.doing}: the registry opened an upload without a Location`);
  return new URL(location, res.url);
}

async function uploadMonolithic(
  requester: Requester,
  ep: Endpoint,
  scopes: string[],
  location: URL,
  desc: Descriptor,
  open: BlobOpener,
  opts: PushBlobOptions,
  op: Operation,
): Promise<HttpResponse> {
  const url = new URL(location);
  url.searchParams.set("digest", desc.digest);
  const res = await requester.send(
    ep,
    {
      method: "PUT",
      path: url,
      headers: { "content-type": "application/octet-stream" },
      body: async () =>
        countingStream(await open(), (n) => opts.onProgress?.(Math.min(n, desc.size), desc.size)),
      contentLength: desc.size,
      scopes,
      retry: false,
    },
    op,
  );
  if (res.status !== 201) throw await statusError(res, op, `uploading blob ${desc.digest}`);
  return res;
}

async function uploadChunked(
  requester: Requester,
  ep: Endpoint,
  scopes: string[],
  start: URL,
  desc: Descriptor,
  open: BlobOpener,
  chunkSize: number,
  opts: PushBlobOptions,
  op: Operation,
): Promise<HttpResponse> {
  let location = start;
  let offset = 0;
  for await (const chunk of rechunk(await open(), chunkSize)) {
    const res = await requester.send(
      ep,
      {
        method: "PATCH",
        path: location,
        headers: {
          "content-type": "application/octet-stream",
          "content-range": `${offset}-${offset + chunk.length - 1}`,
        },
        body: chunk,
        scopes,
        retry: false,
      },
      op,
    );
    if (res.status !== 202)
      throw await statusError(res, op, `uploading blob ${desc.digest} at byte ${offset}`);
    location = uploadLocation(res, op);
    await discard(res);
    offset += chunk.length;
    opts.onProgress?.(Math.min(offset, desc.size), desc.size);
  }
  if (offset !== desc.size) {
    throw new RegistryError(
      "invalid",
      `${op.doing}: the blob ${desc.digest} had ${offset} bytes, not the ${desc.size} its descriptor says`,
    );
  }
  const url = new URL(location);
  url.searchParams.set("digest", desc.digest);
  const res = await requester.send(ep, { method: "PUT", path: url, scopes, retry: false }, op);
  if (res.status !== 201) throw await statusError(res, op, `finishing the upload of ${desc.digest}`);
  return res;
}

/** A stream that reports how many bytes went through it. */
function countingStream(
  source: Readable | AsyncIterable<Uint8Array>,
  report: (bytes: number) => void,
): Readable {
  let total = 0;
  return Readable.from(
    (async function* () {
      for await (const chunk of source) {
        total += (chunk as Uint8Array).byteLength;
        report(total);
        yield chunk as Uint8Array;
      }
    })(),
    { objectMode: false },
  );
}

/** Regroups a stream into chunks of exactly `size` bytes (the last one shorter). */
async function* rechunk(source: Readable | AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const raw of source) {
    let chunk = Buffer.from(raw as Uint8Array);
    while (held + chunk.length >= size) {
      const take = size - held;
      parts.push(chunk.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      held = 0;
      chunk = chunk.subarray(take);
    }
    if (chunk.length > 0) {
      parts.push(chunk);
      held += chunk.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts);
}
