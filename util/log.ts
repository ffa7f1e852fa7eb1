// Structured logs: one JSON object per line on stderr ({time, level, msg, ...fields}), so the
// daemon's logs can be filtered and parsed; the level is set once at start-up.
export type LogLevel = "debug" | "info" | "warn" | "error";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = ORDER.info;
let sink: (line: string) => void = (line) => process.stderr.write(line);

export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}

/** Redirects log lines (tests capture them). */
export function setLogSink(fn: (line: string) => void): void {
  sink = fn;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}

function write(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] < threshold) return;
  const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg };
  for (const [k, v] of Object.entries(fields ?? {})) {
    entry[k] = v instanceof Error ? v.message : v;
  }
  sink(`${JSON.stringify(entry)}\n`);
}

/** A logger with fixed fields (e.g. the component), for one part of the daemon. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  with(fields: Record<string, unknown>): Logger;
}

export function logger(base: Record<string, unknown> = {}): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) =>
    write(level, msg, { ...base, ...fields });
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    with: (fields) => logger({ ...base, ...fields }),
  };
}

export const log = logger();
