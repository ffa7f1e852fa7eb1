// The progress model every layer speaks: the shape of BuildKit's SolveStatus (vertexes,
// statuses, logs, warnings), with times as milliseconds since the epoch.

/** One vertex (build step): what it is and where it stands. Later updates replace earlier ones. */
export interface VertexUpdate {
  digest: string;
  inputs: string[];
  name: string;
  cached?: boolean;
  started?: number;
  completed?: number;
  error?: string;
  progressGroup?: { id: string; name: string; weak: boolean };
}

/** A progress counter inside a vertex: bytes pulled, pushed, transferred. */
export interface StatusUpdate {
  id: string;
  vertex: string;
  name: string;
  current: number;
  total: number;
  timestamp: number;
  started?: number;
  completed?: number;
}

/** Output of a vertex's process (stream 1 stdout, 2 stderr). */
export interface LogChunk {
  vertex: string;
  stream: number;
  data: Uint8Array;
  timestamp: number;
}

/** Something suspicious that did not fail the build. */
export interface WarningUpdate {
  vertex: string;
  level: number;
  short: string;
  detail: string[];
  url?: string;
  /** Source file and line ranges, when a frontend knows them. */
  source?: { filename: string; ranges: { start: number; end: number }[] };
}

/** One batch of progress. */
export interface SolveStatus {
  vertexes: VertexUpdate[];
  statuses: StatusUpdate[];
  logs: LogChunk[];
  warnings: WarningUpdate[];
}

export function emptyStatus(): SolveStatus {
  return { vertexes: [], statuses: [], logs: [], warnings: [] };
}
