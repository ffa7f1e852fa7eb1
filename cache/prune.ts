// Prune and GC, modelled on BuildKit's cache manager: candidates are unused records nothing else
// depends on; with a space target the least valuable is removed one at a time until the cache fits.
import { parseFilters } from "./filters.ts";
import type { GcPolicy, PruneOptions, UsageInfo } from "./types.ts";
import { parseDiskSpace, parseDuration } from "./units.ts";

/** What prune needs from the cache manager. */
export type PruneContext = {
  du: () => Promise<UsageInfo[]>;
  /** Whether `id` could be removed now: no handles, no records depending on it. */
  removable: (id: string) => boolean;
  /** Removes `id` if it still is removable; tells whether it did. */
  remove: (id: string) => Promise<boolean>;
  diskStat: () => Promise<DiskStat>;
  now: () => number;
};

/** Size and free space (for unprivileged users) of the disk holding the cache, in bytes. */
export type DiskStat = { total: number; free: number };

/**
 * BuildKit's defaults (cmd/buildkitd/config, Linux): reserve 10% of the disk but at most 10GB,
 * keep 20% of the disk free, use at most 80% of the disk but at most 100GB. (BuildKit rounds
 * percentages up to whole GB; these are exact.)
 */
export const GC_DEFAULTS = {
  reservedPercent: 10,
  reservedMaxBytes: 10e9,
  minFreePercent: 20,
  maxUsedPercent: 80,
  maxUsedMaxBytes: 100e9,
} as const;

/** The space limits of the default policies for a disk of `diskTotal` bytes. */
export function defaultGcSpace(diskTotal: number): {
  reservedSpace: number;
  minFreeSpace: number;
  maxUsedSpace: number;
} {
  return {
    reservedSpace: Math.min(
      Math.floor((diskTotal * GC_DEFAULTS.reservedPercent) / 100),
      GC_DEFAULTS.reservedMaxBytes,
    ),
    minFreeSpace: Math.floor((diskTotal * GC_DEFAULTS.minFreePercent) / 100),
    maxUsedSpace: Math.min(
      Math.floor((diskTotal * GC_DEFAULTS.maxUsedPercent) / 100),
      GC_DEFAULTS.maxUsedMaxBytes,
    ),
  };
}

/**
 * BuildKit's four default rules, in order:
 * 1. local sources, cache mounts and git checkouts unused for 48h, while the cache is over 512MB
 *    (the three types as separate filters: comma-joined they would be ANDed and never match, the
 *    bug fixed in moby/buildkit#6856);
 * 2. anything unused for 60 days, down to the space limits;
 * 3. anything not shared (and not internal/frontend), down to the space limits;
 * 4. everything (`all`), down to the space limits.
 */
export function defaultGcPolicies(diskTotal: number, space = defaultGcSpace(diskTotal)): GcPolicy[] {
  return [
    {
      filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"],
      keepDuration: "48h",
      maxUsedSpace: 512e6,
    },
    { keepDuration: "1440h", ...space },
    { ...space },
    { all: true, ...space },
  ];
}

/** A GC policy as prune options (keepBytes is the older name of reservedSpace, as in BuildKit). */
export function policyPruneOptions(p: GcPolicy): PruneOptions {
  return {
    all: p.all,
    filters: p.filters,
    keepDuration: p.keepDuration,
    reservedSpace: p.reservedSpace ?? p.keepBytes,
    maxUsedSpace: p.maxUsedSpace,
    minFreeSpace: p.minFreeSpace,
  };
}

/**
 * How many bytes of cache to keep (BuildKit's calculateKeepBytes): at most maxUsedSpace, less if
 * the disk has less than minFreeSpace free, but never below reservedSpace. 0 means no limit.
 */
export function keepBytes(
  total: number,
  free: number,
  s: { reserved: number; maxUsed: number; minFree: number },
): number {
  if (s.reserved === 0 && s.maxUsed === 0 && s.minFree === 0) return 0;
  let keep = s.maxUsed;
  const excess = s.minFree - free;
  if (excess > 0) keep = keep === 0 ? total - excess : Math.min(keep, total - excess);
  return Math.max(keep, s.reserved);
}

function denseRanks(values: number[]): number[] {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  return values.map((v) => sorted.indexOf(v));
}

/** GC order, least valuable first: long unused and rarely used, both ranks weighted equally. */
export function gcOrder(items: UsageInfo[]): UsageInfo[] {
  const last = denseRanks(items.map((u) => u.lastUsedAt ?? Number.NEGATIVE_INFINITY));
  const count = denseRanks(items.map((u) => u.usageCount));
  const maxLast = Math.max(1, ...last);
  const maxCount = Math.max(1, ...count);
  const score = (i: number) => last[i]! / maxLast + count[i]! / maxCount;
  return items
    .map((u, i) => ({ u, s: score(i) }))
    .sort(
      (a, b) =>
        a.s - b.s ||
        (a.u.lastUsedAt ?? 0) - (b.u.lastUsedAt ?? 0) ||
        a.u.createdAt - b.u.createdAt ||
        (a.u.id < b.u.id ? -1 : 1),
    )
    .map((x) => x.u);
}

/** Removes what `opts` selects and yields each removed record. */
export async function* pruneRecords(ctx: PruneContext, opts: PruneOptions): AsyncGenerator<UsageInfo> {
  const match = parseFilters(opts.filters);
  const keepMs = opts.keepDuration === undefined ? 0 : parseDuration(opts.keepDuration);
  const disk = await ctx.diskStat();
  const space = {
    reserved: parseDiskSpace(opts.reservedSpace ?? opts.keepStorage ?? 0, disk.total),
    maxUsed: parseDiskSpace(opts.maxUsedSpace ?? 0, disk.total),
    minFree: parseDiskSpace(opts.minFreeSpace ?? 0, disk.total),
  };
  const gcMode = space.reserved > 0 || space.maxUsed > 0 || space.minFree > 0;
  let keep = 0;
  if (gcMode) {
    const total = (await ctx.du()).reduce((n, u) => n + u.size, 0);
    keep = keepBytes(total, disk.free, space);
  }
  for (;;) {
    const du = await ctx.du();
    const total = du.reduce((n, u) => n + u.size, 0);
    if (gcMode && total <= keep) return;
    const cutoff = ctx.now() - keepMs;
    const candidates = du.filter(
      (u) =>
        ctx.removable(u.id) &&
        (opts.all || (u.recordType !== "internal" && u.recordType !== "frontend" && !u.shared)) &&
        (keepMs === 0 || u.lastUsedAt === undefined || u.lastUsedAt <= cutoff) &&
        match(u),
    );
    if (candidates.length === 0) return;
    const batch = gcMode ? gcOrder(candidates).slice(0, 1) : candidates;
    let removed = false;
    for (const u of batch) {
      if (await ctx.remove(u.id)) {
        removed = true;
        yield { ...u, inUse: false };
      }
    }
    if (!removed) return;
  }
}
