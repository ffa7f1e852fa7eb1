// The cache package: counted refs over snapshots, records in SQLite, disk usage, prune and GC.
export { type CacheManagerOptions, CacheManager, newId } from "./manager.ts";
export { defaultGcPolicies, defaultGcSpace, GC_DEFAULTS, keepBytes } from "./prune.ts";
export { parseFilters } from "./filters.ts";
export { type DiskSpace, type Duration, parseDiskSpace, parseDuration } from "./units.ts";
export {
  CacheError,
  type GcPolicy,
  type ImmutableRef,
  type MutableRef,
  type PruneOptions,
  type RecordInfo,
  type RecordOp,
  type RecordOptions,
  type RecordType,
  type UsageInfo,
} from "./types.ts";
