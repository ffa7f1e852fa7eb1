// Sizes and durations as people write them in configuration: "512MB", "1.5GiB", "10%", "48h".

/** Bytes, or a string: a number with an optional unit, or a percentage of the disk. */
export type DiskSpace = number | string;

/** Seconds, or a string like "48h", "1h30m", "90s", "7d". */
export type Duration = number | string;

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * Bytes of a DiskSpace. KB/MB/GB/TB (and K/M/G/T) are powers of 1000 and KiB/MiB/GiB/TiB powers of
 * 1024; "N%" is N percent of `diskTotal` (the size of the disk holding the cache).
 */
export function parseDiskSpace(v: DiskSpace, diskTotal: number): number {
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0)
      throw new Error(`invalid disk space ${v}: want a non-negative byte count`);
    return Math.floor(v);
  }
  const s = v.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(s);
  if (pct) {
    const p = Number(pct[1]);
    if (p > 100) throw new Error(`invalid disk space ${JSON.stringify(v)}: a percentage is at most 100%`);
    return Math.floor((diskTotal * p) / 100);
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(s);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new Error(`invalid disk space ${JSON.stringify(v)}: want bytes, "512MB", "1.5GiB" or "10%"`);
  }
  return Math.floor(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a Duration (Go-style strings, plus "d" for days; a bare number is seconds). */
export function parseDuration(v: Duration): number {
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0) throw new Error(`invalid duration ${v}: want non-negative seconds`);
    return v * 1000;
  }
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    end = m.index + m[0].length;
  }
  if (s === "" || end !== s.length) {
    throw new Error(
      `invalid duration ${JSON.stringify(v)}: want seconds or a string like "48h", "1h30m", "7d"`,
    );
  }
  return total;
}
