// Machine-readable progress: one JSON object per batch and line, in the shape BuildKit's Go
// client marshals its SolveStatus (`buildctl build --progress=rawjson`): its field names, empty
// fields omitted, byte fields in base64, times in RFC 3339 with nanoseconds.
import type { LogChunk, SolveStatus, StatusUpdate, VertexUpdate, WarningUpdate } from "../types.ts";
import { type DisplayOptions, type DisplayOutput, writeOut } from "./output.ts";
import { type DisplaySummary, ProgressState } from "./state.ts";

type JSONObject = Record<string, unknown>;

/** A time as Go's time.RFC3339Nano prints it in UTC: fraction without trailing zeros. */
export function rfc3339Nano(ms: number): string {
  const whole = Math.floor(ms);
  const iso = new Date(whole).toISOString(); // 2024-01-02T03:04:05.678Z
  const millis = whole - Math.floor(whole / 1000) * 1000;
  const nanos = Math.min(999_999_999, millis * 1e6 + Math.round((ms - whole) * 1e6));
  const frac = nanos === 0 ? "" : "." + String(nanos).padStart(9, "0").replace(/0+$/, "");
  return iso.slice(0, 19) + frac + "Z";
}

function base64(data: Uint8Array | string): string {
  return typeof data === "string"
    ? Buffer.from(data, "utf8").toString("base64")
    : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
}

/** Sets `key` unless the value is Go's zero value for an omitempty field. */
function put(o: JSONObject, key: string, value: unknown): void {
  if (value === undefined || value === "" || value === 0 || value === false) return;
  if (Array.isArray(value) && value.length === 0) return;
  o[key] = value;
}

function vertexJSON(v: VertexUpdate): JSONObject {
  const o: JSONObject = {};
  put(o, "digest", v.digest);
  put(o, "inputs", v.inputs);
  put(o, "name", v.name);
  if (v.started !== undefined) o.started = rfc3339Nano(v.started);
  if (v.completed !== undefined) o.completed = rfc3339Nano(v.completed);
  put(o, "cached", v.cached);
  put(o, "error", v.error);
  if (v.progressGroup) {
    const g: JSONObject = {};
    put(g, "id", v.progressGroup.id);
    put(g, "name", v.progressGroup.name);
    put(g, "weak", v.progressGroup.weak);
    o.progressGroup = g;
  }
  return o;
}

function statusJSON(s: StatusUpdate): JSONObject {
  const o: JSONObject = { id: s.id };
  put(o, "vertex", s.vertex);
  put(o, "name", s.name);
  put(o, "total", s.total);
  o.current = s.current;
  o.timestamp = rfc3339Nano(s.timestamp);
  if (s.started !== undefined) o.started = rfc3339Nano(s.started);
  if (s.completed !== undefined) o.completed = rfc3339Nano(s.completed);
  return o;
}

function logJSON(l: LogChunk): JSONObject {
  const o: JSONObject = {};
  put(o, "vertex", l.vertex);
  put(o, "stream", l.stream);
  o.data = base64(l.data);
  o.timestamp = rfc3339Nano(l.timestamp);
  return o;
}

function warningJSON(w: WarningUpdate): JSONObject {
  const o: JSONObject = {};
  put(o, "vertex", w.vertex);
  put(o, "level", w.level);
  put(o, "short", w.short === "" ? "" : base64(w.short));
  put(
    o,
    "detail",
    w.detail.map((d) => base64(d)),
  );
  put(o, "url", w.url);
  if (w.source) {
    o.sourceInfo = { filename: w.source.filename };
    o.range = w.source.ranges.map((r) => ({ start: { line: r.start }, end: { line: r.end } }));
  }
  return o;
}

/** A batch as the JSON object BuildKit's client.SolveStatus marshals to. */
export function solveStatusJSON(s: SolveStatus): JSONObject {
  const o: JSONObject = {};
  put(o, "vertexes", s.vertexes.map(vertexJSON));
  put(o, "statuses", s.statuses.map(statusJSON));
  put(o, "logs", s.logs.map(logJSON));
  put(o, "warnings", s.warnings.map(warningJSON));
  return o;
}

/** Prints each batch as one line of JSON; resolves when the stream ends. */
export async function displayRawJSON(
  stream: AsyncIterable<SolveStatus>,
  out: DisplayOutput,
  opts: DisplayOptions = {},
): Promise<DisplaySummary> {
  const state = new ProgressState({ tailLines: opts.tailLines });
  for await (const batch of stream) {
    state.apply(batch);
    await writeOut(out, JSON.stringify(solveStatusJSON(batch)) + "\n");
  }
  state.end();
  return state.summary();
}
