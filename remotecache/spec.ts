// The exported cache format: BuildKit's cache config v0 (cache/remotecache/v1/spec.go), so a
// cache is an OCI artifact of the same shape. A record's digest is buildd's cache key (the
// solver's key(v), machine-independent), its results are layer chains by index into `layers`.
// Everything read from outside is checked here before it is used: indexes stay in range,
// parents point at earlier layers (no cycles), digests are sha256.
import { type Digest, isDigest } from "../util/digest.ts";

/** Media type of the cache config blob. */
export const CACHE_CONFIG_MEDIA_TYPE = "application/vnd.buildkit.cacheconfig.v0";
/** The image config field that carries an inline cache (base64 of the config JSON). */
export const INLINE_CACHE_FIELD = "moby.buildkit.cache.v0";
/** Annotation on a layer descriptor: the digest of the uncompressed tar. */
export const UNCOMPRESSED_ANNOTATION = "containerd.io/uncompressed";
/** Annotation on a layer descriptor: when the layer was made. */
export const CREATED_AT_ANNOTATION = "buildkit/createdat";

/** Limits that keep a hostile cache from exhausting memory. */
export const MAX_CONFIG_BYTES = 64 * 1024 * 1024;
const MAX_LAYERS = 100_000;
const MAX_RECORDS = 100_000;

/** One layer blob; `parent` is the index of the layer below (-1: none). */
export type CacheLayer = {
  blob: Digest;
  parent: number;
  annotations?: { mediaType?: string; diffID?: Digest; size?: number; createdAt?: string };
};

/** One result: the top layer of its chain (-1: an empty result); `output` is buildd's output index. */
export type CacheResult = { layer: number; createdAt?: string; output?: number };

/** Links to the records of a record's inputs (information; keys are matched exactly). */
export type CacheInput = { selector?: string; link: number };

export type CacheRecord = {
  /** buildd's cache key of the step. */
  digest: string;
  inputs?: CacheInput[][];
  /** BuildKit names results "layers" in the JSON. */
  layers?: CacheResult[];
  /** buildd: how many outputs the step has (absent: 1). */
  outputs?: number;
};

export type CacheConfig = { layers: CacheLayer[]; records: CacheRecord[] };

/** A layer as the importer needs it: where its blob is and what it unpacks to. */
export type ChainLayerDesc = {
  digest: Digest;
  size: number;
  mediaType: string;
  diffID: Digest;
};

/** Parses and checks a cache config from outside. */
export function parseCacheConfig(bytes: Buffer | string, what: string): CacheConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === "string" ? bytes : bytes.toString("utf8"));
  } catch (e) {
    throw new Error(`${what}: the cache config is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new Error(`${what}: the cache config is not a JSON object`);
  const layersRaw = raw.layers ?? [];
  const recordsRaw = raw.records ?? [];
  if (!Array.isArray(layersRaw) || !Array.isArray(recordsRaw))
    throw new Error(`${what}: the cache config's layers and records must be arrays`);
  if (layersRaw.length > MAX_LAYERS || recordsRaw.length > MAX_RECORDS)
    throw new Error(`${what}: the cache config has more than ${MAX_LAYERS} layers or records`);
  const layers = layersRaw.map((l, i): CacheLayer => {
    if (!isObject(l) || typeof l.blob !== "string" || !isDigest(l.blob))
      throw new Error(`${what}: layers[${i}] has no sha256 blob digest`);
    // BuildKit omits a parent of 0 (Go's omitempty); -1 means none.
    const parent = l.parent === undefined ? 0 : l.parent;
    if (!Number.isInteger(parent) || (parent as number) < -1 || (parent as number) >= layersRaw.length)
      throw new Error(`${what}: layers[${i}] has parent ${String(l.parent)}, out of range`);
    const layer: CacheLayer = { blob: l.blob, parent: parent as number };
    const a = l.annotations;
    if (isObject(a)) {
      layer.annotations = {};
      if (typeof a.mediaType === "string") layer.annotations.mediaType = a.mediaType;
      if (typeof a.diffID === "string" && isDigest(a.diffID)) layer.annotations.diffID = a.diffID;
      if (typeof a.size === "number" && Number.isSafeInteger(a.size) && a.size >= 0)
        layer.annotations.size = a.size;
      if (typeof a.createdAt === "string") layer.annotations.createdAt = a.createdAt;
    }
    return layer;
  });
  // A parent of 0 for layer 0 (BuildKit's omitted -1... or a self-loop) means no parent.
  if (layers[0] && layers[0].parent === 0) layers[0].parent = -1;
  checkAcyclic(layers, what);
  const records = recordsRaw.map((r, i): CacheRecord => {
    if (!isObject(r) || typeof r.digest !== "string" || r.digest === "")
      throw new Error(`${what}: records[${i}] has no digest`);
    const rec: CacheRecord = { digest: r.digest };
    if (r.outputs !== undefined) {
      if (!Number.isInteger(r.outputs) || (r.outputs as number) < 1 || (r.outputs as number) > 1024)
        throw new Error(`${what}: records[${i}] has ${String(r.outputs)} outputs`);
      rec.outputs = r.outputs as number;
    }
    const results = r.layers ?? [];
    if (!Array.isArray(results)) throw new Error(`${what}: records[${i}].layers is not an array`);
    rec.layers = results.map((x, j): CacheResult => {
      if (!isObject(x) || !Number.isInteger(x.layer) || (x.layer as number) < -1)
        throw new Error(`${what}: records[${i}].layers[${j}] has no layer index`);
      if ((x.layer as number) >= layers.length)
        throw new Error(`${what}: records[${i}].layers[${j}] names layer ${String(x.layer)}, out of range`);
      const out: CacheResult = { layer: x.layer as number };
      if (x.output !== undefined) {
        if (!Number.isInteger(x.output) || (x.output as number) < 0 || (x.output as number) > 1023)
          throw new Error(`${what}: records[${i}].layers[${j}] has output ${String(x.output)}`);
        out.output = x.output as number;
      }
      if (typeof x.createdAt === "string") out.createdAt = x.createdAt;
      return out;
    });
    return rec;
  });
  return { layers, records };
}

/** Parents must end: a chain longer than the list of layers loops. */
function checkAcyclic(layers: CacheLayer[], what: string): void {
  const depth = new Int32Array(layers.length).fill(-1);
  for (let i = 0; i < layers.length; i++) {
    const path: number[] = [];
    let at = i;
    while (at !== -1 && depth[at] === -1) {
      if (path.length > layers.length) throw new Error(`${what}: the parents of layer ${i} form a loop`);
      path.push(at);
      at = layers[at]!.parent;
    }
    let d = at === -1 ? 0 : depth[at]!;
    for (const p of path.reverse()) depth[p] = ++d;
  }
}

/** The chain of layer indexes ending at `top`, bottom first. */
export function chainOf(config: CacheConfig, top: number): number[] {
  const out: number[] = [];
  for (let at = top; at !== -1; at = config.layers[at]!.parent) out.push(at);
  return out.reverse();
}

/**
 * Index of the usable records of a config by key: for each output, the chain of layer
 * descriptors (bottom first). `describe` gives a layer's descriptor from where the cache lives
 * (its manifest's layer list or the config's annotations); a record with a layer it cannot
 * describe, or without a result for some output, is left out.
 */
export function recordsByKey(
  config: CacheConfig,
  describe: (layer: CacheLayer) => ChainLayerDesc | undefined,
): Map<string, ChainLayerDesc[][]> {
  const descs = config.layers.map((l) => describe(l));
  const out = new Map<string, ChainLayerDesc[][]>();
  for (const r of config.records) {
    const outputs = r.outputs ?? 1;
    const chains: (ChainLayerDesc[] | undefined)[] = new Array(outputs).fill(undefined);
    for (const res of r.layers ?? []) {
      const o = res.output ?? 0;
      if (o >= outputs || chains[o] !== undefined) continue;
      const idx = res.layer === -1 ? [] : chainOf(config, res.layer);
      const chain = idx.map((i) => descs[i]);
      if (chain.every((d) => d !== undefined)) chains[o] = chain as ChainLayerDesc[];
    }
    if (chains.every((c) => c !== undefined) && !out.has(r.digest))
      out.set(r.digest, chains as ChainLayerDesc[][]);
  }
  return out;
}

/** A layer's descriptor from the config's own annotations (BuildKit writes them too). */
export function describeFromAnnotations(l: CacheLayer): ChainLayerDesc | undefined {
  const a = l.annotations;
  if (!a?.diffID || a.size === undefined || !a.mediaType) return undefined;
  return { digest: l.blob, size: a.size, mediaType: a.mediaType, diffID: a.diffID };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
