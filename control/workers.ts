// Several workers behind the solver's one Worker: an op runs on the first worker whose labels
// match its LLB constraints (`Op.constraints.filter`, containerd-style filters such as
// `labels."org.mobyproject.buildkit.worker.executor"==containerd`), on the default worker (the
// first) when it has none. A result made by one worker and needed by an op on another is copied
// into the other's cache once (remembered on the result); results are found again, and their
// checksums computed, by the worker that holds them.
import type { CacheManager } from "../cache/manager.ts";
import type { ImmutableRef } from "../cache/types.ts";
import { copyDirContents } from "../snapshot/copy.ts";
import { withMounted } from "../snapshot/index.ts";
import type { Digest } from "../util/digest.ts";
import type { ContentSelector, OpSolver, VertexOp, Worker, WorkerRef } from "../worker/types.ts";
import type { OCIWorker } from "../worker/worker.ts";

/** What a worker filter sees: BuildKit's fields of a worker. */
type WorkerFacts = {
  id: string;
  labels: Record<string, string>;
  platforms: { os: string; architecture: string; variant?: string }[];
};

type Selector = { path: string[]; op?: "==" | "!=" | "~="; value?: string; re?: RegExp };

/** Splits `a.b."c.d"` into ["a", "b", "c.d"]. */
function fieldPath(text: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let at = 0;
  while (at < text.length) {
    const m = re.exec(text);
    if (m === null) break;
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!);
    at = re.lastIndex;
    if (m[3] === "") break;
  }
  if (at !== text.length || out.length === 0) throw new Error(`cannot parse field ${JSON.stringify(text)}`);
  return out;
}

function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && quoted && i + 1 < s.length) {
      cur += c + s[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (quoted) throw new Error("unterminated quote");
  out.push(cur);
  return out;
}

/** Where the first operator outside quotes starts, or -1. */
function operatorAt(text: string): number {
  let quoted = false;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text[i]!;
    if (c === "\\" && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && ["==", "!=", "~="].includes(text.slice(i, i + 2))) return i;
  }
  return -1;
}

function parseSelector(text: string): Selector {
  const at = operatorAt(text);
  const path = fieldPath((at < 0 ? text : text.slice(0, at)).trim());
  if (at < 0) return { path };
  const m = [text, text.slice(0, at), text.slice(at, at + 2), text.slice(at + 2)];
  let value = m[3]!.trim();
  if (value.startsWith('"')) {
    if (!value.endsWith('"') || value.length < 2)
      throw new Error(`bad quoted value in ${JSON.stringify(text)}`);
    value = value.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  const op = m[2] as Selector["op"];
  return { path, op, value, re: op === "~=" ? new RegExp(value) : undefined };
}

function fieldValue(w: WorkerFacts, path: string[]): string | undefined {
  const [head, ...rest] = path;
  if (head === "id" && rest.length === 0) return w.id;
  if (head === "labels" && rest.length > 0) return w.labels[rest.join(".")];
  if (head === "platforms" && rest.length === 0) {
    return w.platforms.map((p) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`).join(",");
  }
  return undefined;
}

/**
 * A predicate for containerd-style worker filters (fields `id`, `labels.<key>`, `platforms`):
 * items are ORed, comma-separated selectors in one item ANDed; an empty list matches all.
 */
export function parseWorkerFilters(filters: string[]): (w: WorkerFacts) => boolean {
  const items = filters.map((item) => {
    try {
      return splitOutsideQuotes(item, ",").map(parseSelector);
    } catch (e) {
      throw new Error(`parsing worker filter ${JSON.stringify(item)}: ${(e as Error).message}`);
    }
  });
  if (items.length === 0) return () => true;
  return (w) =>
    items.some((sels) =>
      sels.every((s) => {
        const v = fieldValue(w, s.path);
        if (s.op === undefined) return v !== undefined;
        if (s.op === "==") return v === s.value;
        if (s.op === "!=") return v !== s.value;
        return v !== undefined && s.re!.test(v);
      }),
    );
}

const IMPORTED_META = "worker.imported";

/** The daemon's workers as one Worker for the solver; see the module comment. */
export class WorkerSet implements Worker {
  readonly members: OCIWorker[];

  constructor(members: OCIWorker[]) {
    if (members.length === 0) throw new Error("a worker set needs at least one worker");
    this.members = members;
  }

  get id(): string {
    return this.members[0]!.id;
  }
  get labels(): Record<string, string> {
    return this.members[0]!.labels;
  }
  get platforms(): OCIWorker["platforms"] {
    return this.members[0]!.platforms;
  }

  /** The first member matching `filter` (the default worker for none). */
  select(filter: string[], what: string): OCIWorker {
    if (filter.length === 0) return this.members[0]!;
    const match = parseWorkerFilters(filter);
    const w = this.members.find((m) => match(m));
    if (!w) {
      throw new Error(
        `${what}: no worker matches its constraints ${JSON.stringify(filter)}; workers: ${this.members
          .map(
            (m) =>
              `${m.id} (${Object.entries(m.labels)
                .map(([k, v]) => `${k}=${v}`)
                .join(", ")})`,
          )
          .join("; ")}`,
      );
    }
    return w;
  }

  /** The member whose cache holds `id`. */
  ownerOf(id: string): OCIWorker | undefined {
    return this.members.find((m) => m.cache.exists(id));
  }

  resolveOp(v: VertexOp): OpSolver {
    const w = this.select(v.op.constraints?.filter ?? [], v.name);
    const inner = w.resolveOp(v);
    if (this.members.length === 1) return inner;
    return {
      cacheMap: (ctx) => inner.cacheMap(ctx),
      exec: async (ctx, inputs) => {
        const local: WorkerRef[] = [];
        try {
          for (const r of inputs) local.push(await this.importInto(w, r as ImmutableRef));
          return await inner.exec(ctx, local);
        } finally {
          for (const [i, r] of local.entries()) if (r !== inputs[i]) await r.release().catch(() => {});
        }
      },
    };
  }

  async loadRef(id: string): Promise<WorkerRef | undefined> {
    const w = this.ownerOf(id);
    return w ? w.loadRef(id) : undefined;
  }

  contentChecksum(ref: WorkerRef, selector: ContentSelector): Promise<Digest> {
    const w = this.ownerOf(ref.id) ?? this.members[0]!;
    return w.contentChecksum(ref, selector);
  }

  /** `ref` as a ref of `to`: itself when `to` holds it, else a copy made once and remembered. */
  private async importInto(to: OCIWorker, ref: ImmutableRef): Promise<ImmutableRef> {
    if (to.cache.exists(ref.id)) return ref;
    const known = ref.getMeta<Record<string, string>>(IMPORTED_META)?.[to.id];
    if (known && to.cache.exists(known)) return to.cache.get(known);
    const copy = await copyRef(ref, to.cache, to.mountRoot);
    ref.setMeta(IMPORTED_META, { ...ref.getMeta<Record<string, string>>(IMPORTED_META), [to.id]: copy.id });
    return copy;
  }
}

/** A new committed ref of `cache` holding the files of `ref` (from another worker). */
async function copyRef(ref: ImmutableRef, cache: CacheManager, mountRoot: string): Promise<ImmutableRef> {
  const m = await cache.newMutable(undefined, { description: `copy of ${ref.info().description || ref.id}` });
  try {
    await withMounted(
      await ref.mount({ readonly: true }),
      async (src) => withMounted(await m.mount(), (dst) => copyDirContents(src, dst), { base: mountRoot }),
      { readonly: true, base: mountRoot },
    );
    return await m.commit();
  } catch (e) {
    await m.release().catch(() => {});
    throw e;
  }
}
