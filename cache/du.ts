// Disk usage lines from records: BuildKit's in-use and shared rules over the parent graph.
import type { RecordRow } from "./db.ts";
import type { UsageInfo } from "./types.ts";

/**
 * One UsageInfo per row. In use: held (`held(id)`), or an ancestor of something in use. Shared:
 * an input of a merge or diff, or an ancestor of one (its layers are shown by another record).
 * A held mutable ref counts 0 bytes, as in BuildKit: it is changing.
 */
export async function usageOf(
  rows: RecordRow[],
  held: (id: string) => boolean,
  sizeOf: (id: string) => Promise<number>,
): Promise<UsageInfo[]> {
  const children = new Map<string, string[]>();
  for (const r of rows) for (const p of r.parents) children.set(p, [...(children.get(p) ?? []), r.id]);
  const inUse = new Map<string, boolean>();
  const isInUse = (id: string): boolean => {
    const known = inUse.get(id);
    if (known !== undefined) return known;
    inUse.set(id, false);
    const v = held(id) || (children.get(id) ?? []).some(isInUse);
    inUse.set(id, v);
    return v;
  };
  const shared = new Set<string>();
  const byId = new Map(rows.map((r) => [r.id, r]));
  const markShared = (id: string) => {
    if (shared.has(id)) return;
    shared.add(id);
    for (const p of byId.get(id)?.parents ?? []) markShared(p);
  };
  for (const r of rows) if (r.op !== "layer") r.parents.forEach(markShared);
  const out: UsageInfo[] = [];
  for (const r of rows) {
    let size = r.mutable && held(r.id) ? 0 : r.size;
    if (size === null) size = await sizeOf(r.id).catch(() => 0);
    out.push({
      id: r.id,
      size,
      mutable: r.mutable,
      inUse: isInUse(r.id),
      lastUsedAt: r.lastUsedAt ?? undefined,
      usageCount: r.usageCount,
      createdAt: r.createdAt,
      description: r.description,
      recordType: r.recordType,
      shared: shared.has(r.id),
      parents: r.parents,
    });
  }
  return out;
}
