// A deliberately small distribution-API client, independent of buildd's own, so fixtures can
// seed registries (with basic or bearer-token auth) without trusting the code under test.
import type { Digest } from "../util/digest.ts";
import { allBlobs, type Image, type ImageIndex } from "./oci-image.ts";

export type Credentials = { username: string; password: string };

/** A fetch bound to one registry that answers 401 challenges (Basic or Bearer) and retries once. */
export type RegistryClient = (path: string, init?: RequestInit) => Promise<Response>;

/** Makes a RegistryClient for `registryUrl` ("http://127.0.0.1:PORT"); tokens are cached per scope. */
export function registryClient(registryUrl: string, auth?: Credentials): RegistryClient {
  const authorizations = new Map<string, string>();
  const keyOf = (path: string) => /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(path)?.[1] ?? "";
  return async (path, init = {}) => {
    const url = new URL(path, registryUrl);
    const key = keyOf(url.pathname);
    const send = (authorization?: string) =>
      fetch(url, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), ...(authorization ? { authorization } : {}) },
      });
    const first = await send(authorizations.get(key));
    if (first.status !== 401) return first;
    await first.arrayBuffer();
    const authorization = await answerChallenge(first.headers.get("www-authenticate") ?? "", auth);
    authorizations.set(key, authorization);
    return send(authorization);
  };
}

async function answerChallenge(challenge: string, auth?: Credentials): Promise<string> {
  const basic = auth && `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  if (/^basic /i.test(challenge)) {
    if (!basic) throw new Error("registry wants basic auth, but no credentials were given");
    return basic;
  }
  if (!/^bearer /i.test(challenge))
    throw new Error(`unsupported registry challenge ${JSON.stringify(challenge)}`);
  const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  if (!params.realm) throw new Error(`bearer challenge without realm: ${challenge}`);
  const tokenUrl = new URL(params.realm);
  if (params.service) tokenUrl.searchParams.set("service", params.service);
  if (params.scope) tokenUrl.searchParams.set("scope", params.scope);
  const res = await fetch(tokenUrl, { headers: basic ? { authorization: basic } : {} });
  if (!res.ok) throw new Error(`getting a token from ${tokenUrl}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { token?: string; access_token?: string };
  return `Bearer ${body.token ?? body.access_token}`;
}

/** Splits "repo:tag" / "repo@sha256:..." / "repo" (latest) into repository and manifest reference. */
export function parseRepoRef(ref: string): { repo: string; reference: string } {
  const at = ref.indexOf("@");
  if (at >= 0) return { repo: ref.slice(0, at), reference: ref.slice(at + 1) };
  const colon = ref.lastIndexOf(":");
  if (colon > ref.lastIndexOf("/")) return { repo: ref.slice(0, colon), reference: ref.slice(colon + 1) };
  return { repo: ref, reference: "latest" };
}

async function check(res: Response, what: string, ok: number[]): Promise<Response> {
  if (!ok.includes(res.status))
    throw new Error(`${what}: registry answered ${res.status}: ${await res.text()}`);
  return res;
}

/** Uploads a blob unless the registry has it (HEAD), as one POST + PUT (monolithic upload). */
export async function pushBlob(
  client: RegistryClient,
  repo: string,
  digest: Digest,
  blob: Buffer,
): Promise<void> {
  const head = await client(`/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  if (head.status === 200) return;
  const start = await check(
    await client(`/v2/${repo}/blobs/uploads/`, { method: "POST" }),
    `starting upload of ${digest} to ${repo}`,
    [202],
  );
  await start.arrayBuffer();
  const location = new URL(start.headers.get("location") ?? "", start.url);
  location.searchParams.set("digest", digest);
  const put = await client(location.pathname + location.search, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream" },
    body: blob,
  });
  await (await check(put, `uploading ${digest} to ${repo}`, [201])).arrayBuffer();
}

/** PUTs raw manifest bytes under a tag or digest; for negative tests that need a manifest as-is. */
export async function pushManifest(
  client: RegistryClient,
  repo: string,
  reference: string,
  manifest: Buffer,
  mediaType: string,
): Promise<void> {
  const res = await client(`/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": mediaType },
    body: manifest,
  });
  await (await check(res, `pushing manifest ${repo}:${reference}`, [201])).arrayBuffer();
}

/** Pushes an image or index (children first, by digest) and tags it; returns the manifest digest. */
export async function pushImage(
  registryUrl: string,
  ref: string,
  target: Image | ImageIndex,
  opts: { auth?: Credentials } = {},
): Promise<Digest> {
  const client = registryClient(registryUrl, opts.auth);
  const { repo, reference } = parseRepoRef(ref);
  const images = target.kind === "index" ? target.images : [target];
  const manifests = new Set<string>([target.digest, ...images.map((i) => i.digest)]);
  for (const [digest, blob] of allBlobs(target)) {
    if (!manifests.has(digest)) await pushBlob(client, repo, digest, blob);
  }
  if (target.kind === "index") {
    for (const image of images)
      await pushManifest(client, repo, image.digest, image.manifest, image.mediaType);
  }
  await pushManifest(client, repo, reference, target.manifest, target.mediaType);
  return target.digest;
}
