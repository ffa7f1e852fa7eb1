// A cache in a local OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`),
// written and read by the daemon. The directory is the caller's: nothing is followed through a
// symlink inside it, blob names are checked digests, files are opened with O_NOFOLLOW and read
// only up to the size their descriptor claims; a blob is written to a temporary name and
// renamed, so a reader never sees half of one.
import { randomUUID } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { lstat, mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { ContentStore } from "../content/store.ts";
import type { Descriptor } from "../source/registry/index.ts";
import { type Digest, digestOf, isDigest } from "../util/digest.ts";

const REF_NAME = "org.opencontainers.image.ref.name";
const INDEX_LIMIT = 4 * 1024 * 1024;

/** index.json of a layout. */
type LayoutIndex = { schemaVersion: 2; mediaType?: string; manifests: Descriptor[] };

/** The path of a blob inside `dir`; `digest` must be a checked sha256 digest. */
function blobPath(dir: string, digest: Digest): string {
  if (!isDigest(digest)) throw new Error(`cache layout ${dir}: ${digest} is not a sha256 digest`);
  return join(dir, "blobs", "sha256", digest.slice("sha256:".length));
}

/** A real directory at `path` (created when missing); a symlink or a file there is refused. */
async function realDir(path: string, what: string): Promise<void> {
  let st: Stats | undefined;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (st === undefined) {
    await mkdir(path, { mode: 0o755 });
    st = await lstat(path);
  }
  if (!st.isDirectory()) throw new Error(`${what}: ${path} is not a directory (symlinks are not followed)`);
}

/** Writes blobs and an index entry (`tag`) into a layout at `dir`, creating it when missing. */
export async function writeLayout(
  dir: string,
  content: ContentStore,
  blobs: Descriptor[],
  root: Descriptor,
  tag: string,
  signal: AbortSignal,
): Promise<void> {
  const what = `writing the cache to ${dir}`;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await realDir(dir, what);
  await realDir(join(dir, "blobs"), what);
  await realDir(join(dir, "blobs", "sha256"), what);
  for (const b of [...blobs, root]) {
    signal.throwIfAborted();
    const path = blobPath(dir, b.digest);
    const st = await lstat(path).catch(() => undefined);
    // Blobs are named by digest: one of the right size is the same blob, kept from an earlier export.
    if (st?.isFile() && st.size === b.size) continue;
    await writeAtomically(path, await content.readStream(b.digest));
  }
  await writeAtomically(join(dir, "oci-layout"), [Buffer.from('{"imageLayoutVersion":"1.0.0"}')]);
  const index = await readIndex(dir).catch(() => undefined);
  const others = (index?.manifests ?? []).filter((m) => m.annotations?.[REF_NAME] !== tag);
  const entry: Descriptor = { ...root, annotations: { ...root.annotations, [REF_NAME]: tag } };
  const next: LayoutIndex = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [...others, entry],
  };
  await writeAtomically(join(dir, "index.json"), [Buffer.from(JSON.stringify(next))]);
}

async function writeAtomically(path: string, data: Readable | Iterable<Buffer>): Promise<void> {
  const tmp = `${path}.tmp-${randomUUID()}`;
  const fh = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    for await (const chunk of data as AsyncIterable<Buffer>) await fh.write(chunk);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}

/** The layout's index.json, checked. */
async function readIndex(dir: string): Promise<LayoutIndex> {
  const bytes = await readSmall(join(dir, "index.json"), INDEX_LIMIT, `the cache in ${dir}`);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new Error(`the cache in ${dir}: index.json is not JSON: ${(e as Error).message}`);
  }
  const manifests = (raw as { manifests?: unknown }).manifests;
  if (!Array.isArray(manifests)) throw new Error(`the cache in ${dir}: index.json has no manifests`);
  return {
    schemaVersion: 2,
    manifests: manifests.filter(
      (m): m is Descriptor =>
        m !== null &&
        typeof m === "object" &&
        typeof m.digest === "string" &&
        isDigest(m.digest) &&
        Number.isSafeInteger(m.size) &&
        m.size >= 0,
    ),
  };
}

/** The root entry of a layout: by digest, else by tag (default "latest"). */
export async function layoutRoot(dir: string, sel: { tag?: string; digest?: string }): Promise<Descriptor> {
  const index = await readIndex(dir);
  const tag = sel.tag ?? "latest";
  const found = sel.digest
    ? index.manifests.find((m) => m.digest === sel.digest)
    : index.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
  if (!found) {
    const have = index.manifests.map((m) => m.annotations?.[REF_NAME] ?? m.digest);
    throw new Error(
      `the cache in ${dir} has no ${sel.digest ? `manifest ${sel.digest}` : `tag ${JSON.stringify(tag)}`}; it has ${have.join(", ") || "nothing"}`,
    );
  }
  return found;
}

/** A small blob of the layout (a manifest, a config), verified against its descriptor. */
export async function readLayoutBlob(dir: string, desc: Descriptor, limit: number): Promise<Buffer> {
  if (desc.size > limit) throw new Error(`the cache in ${dir}: blob ${desc.digest} is over ${limit} bytes`);
  const bytes = await readSmall(blobPath(dir, desc.digest), limit, `the cache in ${dir}`);
  if (bytes.length !== desc.size || digestOf(bytes) !== desc.digest)
    throw new Error(
      `the cache in ${dir}: blob ${desc.digest} is corrupt (its bytes do not match its digest)`,
    );
  return bytes;
}

/** Copies a layout blob into the content store, which verifies it before it exists there. */
export async function ingestLayoutBlob(
  dir: string,
  content: ContentStore,
  desc: Descriptor,
  onProgress: (current: number, total: number) => void,
  signal: AbortSignal,
): Promise<void> {
  const path = blobPath(dir, desc.digest);
  await content.ingest(desc, async (offset) => {
    signal.throwIfAborted();
    const fh = await openRegular(path, `the cache in ${dir}: blob ${desc.digest}`);
    const stream = fh.createReadStream({ start: offset, end: desc.size - 1, autoClose: true, signal });
    let current = offset;
    const body = (async function* () {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        current += chunk.length;
        onProgress(Math.min(current, desc.size), desc.size);
        yield chunk;
      }
    })();
    return offset > 0 ? { body, startsAt: offset } : body;
  });
  onProgress(desc.size, desc.size);
}

async function openRegular(path: string, what: string) {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new Error(`${what} is missing`);
    if (code === "ELOOP") throw new Error(`${what} is a symlink, which is not followed`);
    throw e;
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new Error(`${what} is not a regular file`);
  }
  return fh;
}

async function readSmall(path: string, limit: number, what: string): Promise<Buffer> {
  const fh = await openRegular(path, `${what}: ${path}`);
  try {
    const st = await fh.stat();
    if (st.size > limit) throw new Error(`${what}: ${path} is over ${limit} bytes`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
