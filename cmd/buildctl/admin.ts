// buildctl du, prune, debug workers, debug info: the daemon's cache and workers.
import type { Connection } from "../../client/connection.ts";
import { dial } from "./dial.ts";

async function withConn<T>(_addr: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const conn = await dial();
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/** Decimal units like BuildKit's buildctl ("1.05MB"). */
export function formatSize(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v}B` : `${v.toFixed(2)}${units[i]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 1)))
        .join("\t")
        .trimEnd(),
    )
    .join("\n");
}

const ago = (ms: number | undefined) =>
  ms === undefined ? "" : `${Math.max(0, Math.round((Date.now() - ms) / 60000))} minutes ago`;

export async function du(addr: string, opts: { verbose?: boolean; filter: string[] }): Promise<void> {
  const { timestampMs } = await import("@bufbuild/protobuf/wkt");
  const res = await withConn(addr, (c) => c.control.diskUsage({ filter: opts.filter }));
  const recs = [...res.record].sort((a, b) => Number(b.Size - a.Size));
  const total = recs.reduce((n, r) => n + Number(r.Size), 0);
  const shared = recs.filter((r) => r.Shared).reduce((n, r) => n + Number(r.Size), 0);
  const out: string[] = [];
  if (opts.verbose) {
    for (const r of recs) {
      out.push(
        table([
          ["ID:", r.ID],
          ["Parents:", r.Parents.join(", ")],
          ["Created at:", r.CreatedAt ? new Date(timestampMs(r.CreatedAt)).toISOString() : ""],
          ["Mutable:", String(r.Mutable)],
          ["Reclaimable:", String(!r.InUse)],
          ["Shared:", String(r.Shared)],
          ["Size:", formatSize(Number(r.Size))],
          ["Description:", r.Description],
          ["Usage count:", String(r.UsageCount)],
          ["Last used:", r.LastUsedAt ? ago(timestampMs(r.LastUsedAt)) : ""],
          ["Type:", r.RecordType],
        ]),
        "",
      );
    }
  } else {
    const rows = [["ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED"]];
    for (const r of recs) {
      rows.push([
        `${r.ID}${r.Mutable ? "*" : ""}`,
        String(!r.InUse),
        formatSize(Number(r.Size)),
        r.LastUsedAt ? ago(timestampMs(r.LastUsedAt)) : "",
      ]);
    }
    out.push(table(rows));
  }
  out.push(
    `Shared:\t\t${formatSize(shared)}`,
    `Private:\t${formatSize(total - shared)}`,
    `Reclaimable:\t${formatSize(recs.filter((r) => !r.InUse).reduce((n, r) => n + Number(r.Size), 0))}`,
    `Total:\t\t${formatSize(total)}`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
}

/** "48h", "30m", "1h30m", plain seconds → nanoseconds. */
function parseDurationNs(s: string): bigint {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  if (/^\d+$/.test(s)) return BigInt(s) * 1_000_000_000n;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * ({ ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]!]!;
    end = (m.index ?? 0) + m[0].length;
  }
  if (end !== s.length || s === "")
    throw new Error(`--keep-duration ${JSON.stringify(s)}: want a duration like 48h or 30m`);
  return BigInt(Math.round(total * 1e9));
}

/** "10GB", "512MB", "1.5GiB", plain bytes. */
function parseBytes(s: string, flag: string): bigint {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(s.trim());
  if (!m) throw new Error(`${flag} ${JSON.stringify(s)}: want a size like 10GB or 512MB`);
  const unit = (m[2] ?? "b").toLowerCase();
  const pow = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] as "b" | "k" | "m" | "g" | "t"];
  const base = unit.includes("i") ? 1024 : 1000;
  return BigInt(Math.round(Number(m[1]) * base ** pow));
}

export async function prune(
  addr: string,
  opts: { keepDuration?: string; keepStorage?: string; filter: string[]; all?: boolean; verbose?: boolean },
): Promise<void> {
  const req = {
    filter: opts.filter,
    all: opts.all ?? false,
    keepDuration: opts.keepDuration ? parseDurationNs(opts.keepDuration) : 0n,
    reservedSpace: opts.keepStorage ? parseBytes(opts.keepStorage, "--keep-storage") : 0n,
  };
  let total = 0;
  const rows = [["ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED"]];
  await withConn(addr, async (c) => {
    for await (const r of c.control.prune(req)) {
      total += Number(r.Size);
      rows.push([r.ID, "true", formatSize(Number(r.Size)), ""]);
      if (opts.verbose) process.stdout.write(`${r.ID}\t${formatSize(Number(r.Size))}\t${r.Description}\n`);
    }
  });
  if (!opts.verbose && rows.length > 1) process.stdout.write(`${table(rows)}\n`);
  process.stdout.write(`Total:\t${formatSize(total)}\n`);
}

export async function workers(addr: string, opts: { verbose?: boolean; filter: string[] }): Promise<void> {
  const res = await withConn(addr, (c) => c.control.listWorkers({ filter: opts.filter }));
  const platform = (p: { OS: string; Architecture: string; Variant: string }) =>
    `${p.OS}/${p.Architecture}${p.Variant ? `/${p.Variant}` : ""}`;
  if (!opts.verbose) {
    const rows = [["ID", "PLATFORMS"]];
    for (const w of res.record) rows.push([w.ID, w.platforms.map(platform).join(",")]);
    process.stdout.write(`${table(rows)}\n`);
    return;
  }
  const out: string[] = [];
  for (const w of res.record) {
    out.push(`ID:\t\t${w.ID}`, `Platforms:\t${w.platforms.map(platform).join(",")}`, "Labels:");
    for (const [k, v] of Object.entries(w.Labels).sort()) out.push(`\t${k}:\t${v}`);
    for (const [i, p] of w.GCPolicy.entries()) {
      out.push(`GC Policy rule#${i}:`, `\tAll:\t\t${p.all}`);
      if (p.filters.length) out.push(`\tFilters:\t${p.filters.join(" ")}`);
      if (p.keepDuration > 0n) out.push(`\tKeep duration:\t${Number(p.keepDuration) / 3600}h`);
      if (p.reservedSpace > 0n) out.push(`\tReserved space:\t${formatSize(Number(p.reservedSpace))}`);
      if (p.maxUsedSpace > 0n) out.push(`\tMax used space:\t${formatSize(Number(p.maxUsedSpace))}`);
      if (p.minFreeSpace > 0n) out.push(`\tMin free space:\t${formatSize(Number(p.minFreeSpace))}`);
    }
    out.push("");
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

export async function info(addr: string): Promise<void> {
  const res = await withConn(addr, (c) => c.control.info({}));
  const v = res.buildkitVersion;
  process.stdout.write(
    `BuildKit:\t${v?.package ?? ""} ${v?.version ?? ""} ${v?.revision ?? ""}`.trimEnd() + "\n",
  );
}
