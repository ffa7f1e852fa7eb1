// The image config a Dockerfile build produces (Docker's extension of the OCI image config):
// the runtime defaults (Env, Cmd, ...), the history, and their JSON form. History strings and
// defaults follow BuildKit so that the same Dockerfile gives the same config.
import type { PlatformSpec } from "../../../llb/index.ts";
import type { HealthConfig } from "../instructions/commands.ts";

export interface ImageHistory {
  /** RFC 3339 time. */
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** The runtime configuration part ("config") of an image config. */
export interface ImageRunConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  Healthcheck?: HealthConfig;
  OnBuild?: string[];
  Shell?: string[];
}

/** An image config: platform, runtime config, layers and history. */
export interface DockerImage {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  config: ImageRunConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: ImageHistory[];
}

/** BuildKit's comment on every history entry it writes. */
export const HISTORY_COMMENT = "buildkit.dockerfile.v0";

/** The PATH every Linux stage gets when its base image sets none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The config of `FROM scratch` for a platform. */
export function emptyImage(platform: PlatformSpec): DockerImage {
  const img: DockerImage = {
    architecture: platform.architecture,
    os: platform.os,
    config: { WorkingDir: "/", Env: [`PATH=${DEFAULT_PATH}`] },
    rootfs: { type: "layers", diff_ids: [] },
  };
  if (platform.variant) img.variant = platform.variant;
  return img;
}

/** A deep copy, so a stage can change what it inherited. */
export function cloneImage(img: DockerImage): DockerImage {
  return structuredClone(img);
}

/** Adds or replaces K=V in an env list, keeping the position of a replaced entry. */
export function addEnv(env: readonly string[] | undefined, key: string, value: string): string[] {
  const out = [...(env ?? [])];
  const i = out.findIndex((e) => (e.includes("=") ? e.slice(0, e.indexOf("=")) : e) === key);
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** Splits "K=V" (a bare "K" has an empty value). */
export function splitKeyValue(kv: string): [string, string] {
  const i = kv.indexOf("=");
  return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
}

/** Appends a history entry; entries for steps that ran an op end in " # buildkit". */
export function commitToHistory(
  img: DockerImage,
  createdBy: string,
  opts: { withLayer: boolean; ranOp?: boolean; created?: string },
): void {
  const entry: ImageHistory = {};
  if (opts.created !== undefined) entry.created = opts.created;
  entry.created_by = opts.ranOp ? `${createdBy} # buildkit` : createdBy;
  entry.comment = HISTORY_COMMENT;
  if (!opts.withLayer) entry.empty_layer = true;
  img.history = [...(img.history ?? []), entry];
}

/** Reads an image config from a registry (JSON bytes or object), tolerating missing fields. */
export function parseImageConfig(data: Uint8Array | string | object): DockerImage {
  const raw = (
    typeof data === "string" || data instanceof Uint8Array
      ? JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data))
      : data
  ) as Record<string, unknown>;
  if (!raw || typeof raw !== "object") throw new Error("image config is not a JSON object");
  const cfg = (raw.config ?? {}) as Record<string, unknown> & { Healthcheck?: Record<string, unknown> };
  const img = structuredClone(raw) as unknown as DockerImage;
  img.config = structuredClone(cfg) as ImageRunConfig;
  img.rootfs = (raw.rootfs as DockerImage["rootfs"]) ?? { type: "layers", diff_ids: [] };
  img.rootfs.diff_ids ??= [];
  img.architecture ??= "";
  img.os ??= "";
  if (cfg.Healthcheck) {
    const h = cfg.Healthcheck;
    const ns = (v: unknown) => BigInt(Math.trunc(Number(v ?? 0)));
    img.config.Healthcheck = {
      test: (h.Test as string[] | undefined) ?? [],
      interval: ns(h.Interval),
      timeout: ns(h.Timeout),
      startPeriod: ns(h.StartPeriod),
      startInterval: ns(h.StartInterval),
      retries: Number(h.Retries ?? 0),
    };
  }
  return img;
}

const nonEmpty = <T>(v: T[] | undefined) => (v && v.length > 0 ? v : undefined);
const nonEmptyRecord = <T>(v: Record<string, T> | undefined) =>
  v && Object.keys(v).length > 0 ? v : undefined;

/** The runtime config in Docker's JSON field order, empty fields omitted as Go does. */
export function runConfigToJSON(c: ImageRunConfig): Record<string, unknown> {
  const h = c.Healthcheck;
  const health = h && {
    Test: nonEmpty(h.test),
    Interval: h.interval ? Number(h.interval) : undefined,
    Timeout: h.timeout ? Number(h.timeout) : undefined,
    StartPeriod: h.startPeriod ? Number(h.startPeriod) : undefined,
    StartInterval: h.startInterval ? Number(h.startInterval) : undefined,
    Retries: h.retries || undefined,
  };
  return dropUndefined({
    User: c.User || undefined,
    ExposedPorts: nonEmptyRecord(c.ExposedPorts),
    Env: nonEmpty(c.Env),
    Entrypoint: nonEmpty(c.Entrypoint),
    Cmd: nonEmpty(c.Cmd),
    Volumes: nonEmptyRecord(c.Volumes),
    WorkingDir: c.WorkingDir || undefined,
    Labels: nonEmptyRecord(c.Labels),
    StopSignal: c.StopSignal || undefined,
    ArgsEscaped: c.ArgsEscaped || undefined,
    Healthcheck: health && dropUndefined(health),
    OnBuild: nonEmpty(c.OnBuild),
    Shell: nonEmpty(c.Shell),
  });
}

/** The whole image config as JSON-ready data, top-level keys sorted as BuildKit writes them. */
export function imageToJSON(img: DockerImage): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architecture: img.architecture,
    author: img.author || undefined,
    config: runConfigToJSON(img.config),
    created: img.created,
    history: nonEmpty(img.history),
    os: img.os,
    "os.features": nonEmpty(img["os.features"]),
    "os.version": img["os.version"] || undefined,
    rootfs: { type: img.rootfs.type, diff_ids: img.rootfs.diff_ids },
    variant: img.variant || undefined,
  };
  return dropUndefined(out);
}

function dropUndefined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}
