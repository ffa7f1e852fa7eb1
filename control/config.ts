// The daemon's configuration: buildd.toml (laid out like buildkitd.toml) merged with flags.
// Everything is validated at start-up: a mistake names the file and the key, so it is found
// before the first build, not during it.
import { readFile } from "node:fs/promises";
import { parse as parseToml } from "smol-toml";
import { isLogLevel, type LogLevel } from "../util/log.ts";

export interface GCPolicyConfig {
  all?: boolean;
  filters?: string[];
  keepDuration?: string | number;
  reservedSpace?: string | number;
  maxUsedSpace?: string | number;
  minFreeSpace?: string | number;
  keepBytes?: string | number;
}

export interface RegistryConfig {
  /** Talk plain http to this host. */
  http: boolean;
  /** Accept any TLS certificate from this host. */
  insecure: boolean;
  mirrors: string[];
  /** Extra CA certificate files for this host. */
  ca: string[];
}

export interface DaemonConfig {
  root: string;
  grpc: {
    address: string[];
    tls?: { cert: string; key: string; ca?: string };
  };
  log: { level: LogLevel };
  worker: {
    oci: {
      enabled: boolean;
      snapshotter: "auto" | "overlayfs" | "native";
      maxParallelism: number;
      gc: boolean;
      gcpolicy?: GCPolicyConfig[];
      /** Network for ops that do not ask for one. */
      networkMode: "host" | "none";
      platforms: string[];
    };
    containerd: {
      enabled: boolean;
      address: string;
      namespace: string;
      snapshotter: string;
      platforms: string[];
      gc: boolean;
      gcpolicy?: GCPolicyConfig[];
      /** Network for ops that do not ask for one. */
      networkMode: "host" | "none";
      maxParallelism?: number;
      /** "oci": when containerd cannot be reached at start, run the runc (oci) worker instead of failing. */
      fallback: "none" | "oci";
      /** runc's state dir for build containers (the runc shim's `root`); default: the shim's own. */
      runcRoot?: string;
    };
  };
  registry: Record<string, RegistryConfig>;
  /** Entitlements builds may ask for: "security.insecure", "network.host". */
  insecureEntitlements: string[];
  frontend: {
    /** Frontend images allowed for gateway.v0 and # syntax= (empty: any). */
    allowed: string[];
  };
}

export const DEFAULT_CONFIG_PATH = "/etc/buildd/buildd.toml";
export const DEFAULT_ROOT = "/var/lib/buildd";
export const DEFAULT_ADDRESS = "unix:///run/buildd/buildd.sock";

export function defaultConfig(): DaemonConfig {
  return {
    root: DEFAULT_ROOT,
    grpc: { address: [DEFAULT_ADDRESS] },
    log: { level: "info" },
    worker: {
      oci: {
        enabled: true,
        snapshotter: "auto",
        maxParallelism: Math.max(1, navigator.hardwareConcurrency || 1),
        gc: true,
        networkMode: "host",
        platforms: [],
      },
      containerd: {
        enabled: false,
        address: "/run/containerd/containerd.sock",
        namespace: "buildd",
        snapshotter: "overlayfs",
        platforms: [],
        gc: true,
        networkMode: "host",
        fallback: "none",
      },
    },
    registry: {},
    insecureEntitlements: [],
    frontend: { allowed: [] },
  };
}

/** A configuration mistake: names the source (file or flag) and the key. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Table = Record<string, unknown>;

/** Reads and validates a config file; a missing default file is an empty config. */
export async function loadConfigFile(path: string, explicit: boolean): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" && !explicit) return defaultConfig();
    throw new ConfigError(`config ${path}: cannot read it: ${(e as Error).message}`);
  }
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (e) {
    throw new ConfigError(`config ${path}: not valid TOML: ${(e as Error).message.split("\n")[0]}`);
  }
  return parseConfig(doc, path);
}

/** Validates a parsed TOML document into a DaemonConfig. */
export function parseConfig(doc: Table, source: string): DaemonConfig {
  const c = defaultConfig();
  const fail = (key: string, why: string): never => {
    throw new ConfigError(`config ${source}: ${key}: ${why}`);
  };
  const v = new Validator(fail);

  v.only(doc, "", [
    "root",
    "debug",
    "grpc",
    "log",
    "worker",
    "registry",
    "insecure-entitlements",
    "frontend",
  ]);
  if (doc.root !== undefined) c.root = v.absPath(doc.root, "root");
  if (doc.debug !== undefined && v.bool(doc.debug, "debug")) c.log.level = "debug";
  if (doc.grpc !== undefined) {
    const g = v.table(doc.grpc, "grpc");
    v.only(g, "grpc", ["address", "tls"]);
    if (g.address !== undefined)
      c.grpc.address = v.strings(g.address, "grpc.address").map((a) => v.address(a, "grpc.address"));
    if (g.tls !== undefined) {
      const t = v.table(g.tls, "grpc.tls");
      v.only(t, "grpc.tls", ["cert", "key", "ca"]);
      c.grpc.tls = {
        cert: v.absPath(t.cert, "grpc.tls.cert"),
        key: v.absPath(t.key, "grpc.tls.key"),
        ca: t.ca === undefined ? undefined : v.absPath(t.ca, "grpc.tls.ca"),
      };
    }
  }
  if (doc.log !== undefined) {
    const l = v.table(doc.log, "log");
    v.only(l, "log", ["level"]);
    if (l.level !== undefined) {
      const level = v.str(l.level, "log.level");
      if (!isLogLevel(level))
        fail("log.level", `want debug, info, warn or error, got ${JSON.stringify(level)}`);
      c.log.level = level as LogLevel;
    }
  }
  if (doc.worker !== undefined) {
    const w = v.table(doc.worker, "worker");
    v.only(w, "worker", ["oci", "containerd"]);
    if (w.oci !== undefined) {
      const o = v.table(w.oci, "worker.oci");
      v.only(o, "worker.oci", [
        "enabled",
        "snapshotter",
        "max-parallelism",
        "gc",
        "gcpolicy",
        "network-mode",
        "platforms",
      ]);
      const oci = c.worker.oci;
      if (o.enabled !== undefined) oci.enabled = v.bool(o.enabled, "worker.oci.enabled");
      if (o.snapshotter !== undefined) {
        oci.snapshotter = v.oneOf(o.snapshotter, "worker.oci.snapshotter", [
          "auto",
          "overlayfs",
          "native",
        ] as const);
      }
      if (o["max-parallelism"] !== undefined)
        oci.maxParallelism = v.posInt(o["max-parallelism"], "worker.oci.max-parallelism");
      if (o.gc !== undefined) oci.gc = v.bool(o.gc, "worker.oci.gc");
      if (o.gcpolicy !== undefined) oci.gcpolicy = v.gcPolicies(o.gcpolicy, "worker.oci.gcpolicy");
      if (o["network-mode"] !== undefined)
        oci.networkMode = v.oneOf(o["network-mode"], "worker.oci.network-mode", ["host", "none"] as const);
      if (o.platforms !== undefined) oci.platforms = v.strings(o.platforms, "worker.oci.platforms");
    }
    if (w.containerd !== undefined) {
      const o = v.table(w.containerd, "worker.containerd");
      v.only(o, "worker.containerd", [
        "enabled",
        "address",
        "namespace",
        "snapshotter",
        "platforms",
        "gc",
        "gcpolicy",
        "network-mode",
        "max-parallelism",
        "fallback",
        "runc-root",
      ]);
      const ctd = c.worker.containerd;
      if (o.enabled !== undefined) ctd.enabled = v.bool(o.enabled, "worker.containerd.enabled");
      if (o.address !== undefined) {
        ctd.address = v.str(o.address, "worker.containerd.address");
        if (!ctd.address.replace(/^unix:\/\//, "").startsWith("/"))
          fail(
            "worker.containerd.address",
            `want the absolute path of containerd's socket, got ${JSON.stringify(ctd.address)}`,
          );
      }
      if (o.namespace !== undefined) ctd.namespace = v.str(o.namespace, "worker.containerd.namespace");
      if (o.snapshotter !== undefined)
        ctd.snapshotter = v.str(o.snapshotter, "worker.containerd.snapshotter");
      if (o.platforms !== undefined) ctd.platforms = v.strings(o.platforms, "worker.containerd.platforms");
      if (o.gc !== undefined) ctd.gc = v.bool(o.gc, "worker.containerd.gc");
      if (o.gcpolicy !== undefined) ctd.gcpolicy = v.gcPolicies(o.gcpolicy, "worker.containerd.gcpolicy");
      if (o["network-mode"] !== undefined) {
        ctd.networkMode = v.oneOf(o["network-mode"], "worker.containerd.network-mode", [
          "host",
          "none",
        ] as const);
      }
      if (o["max-parallelism"] !== undefined)
        ctd.maxParallelism = v.posInt(o["max-parallelism"], "worker.containerd.max-parallelism");
      if (o.fallback !== undefined)
        ctd.fallback = v.oneOf(o.fallback, "worker.containerd.fallback", ["none", "oci"] as const);
      if (o["runc-root"] !== undefined)
        ctd.runcRoot = v.absPath(o["runc-root"], "worker.containerd.runc-root");
    }
  }
  if (doc.registry !== undefined) {
    for (const [host, raw] of Object.entries(v.table(doc.registry, "registry"))) {
      const key = `registry.${JSON.stringify(host)}`;
      const r = v.table(raw, key);
      v.only(r, key, ["http", "insecure", "mirrors", "ca"]);
      c.registry[host] = {
        http: r.http === undefined ? false : v.bool(r.http, `${key}.http`),
        insecure: r.insecure === undefined ? false : v.bool(r.insecure, `${key}.insecure`),
        mirrors: r.mirrors === undefined ? [] : v.strings(r.mirrors, `${key}.mirrors`),
        ca: r.ca === undefined ? [] : v.strings(r.ca, `${key}.ca`).map((p) => v.absPath(p, `${key}.ca`)),
      };
    }
  }
  if (doc["insecure-entitlements"] !== undefined) {
    c.insecureEntitlements = v.strings(doc["insecure-entitlements"], "insecure-entitlements");
    for (const e of c.insecureEntitlements) {
      if (e !== "security.insecure" && e !== "network.host") {
        fail(
          "insecure-entitlements",
          `unknown entitlement ${JSON.stringify(e)}: want security.insecure or network.host`,
        );
      }
    }
  }
  if (doc.frontend !== undefined) {
    const f = v.table(doc.frontend, "frontend");
    v.only(f, "frontend", ["allowed"]);
    if (f.allowed !== undefined) c.frontend.allowed = v.strings(f.allowed, "frontend.allowed");
  }
  return c;
}

/** Checks one value per call, failing with the key. */
class Validator {
  private readonly fail: (key: string, why: string) => never;
  constructor(fail: (key: string, why: string) => never) {
    this.fail = fail;
  }
  table(x: unknown, key: string): Table {
    if (x === null || typeof x !== "object" || Array.isArray(x)) this.fail(key, "want a table");
    return x as Table;
  }
  only(t: Table, prefix: string, allowed: string[]): void {
    for (const k of Object.keys(t)) {
      if (!allowed.includes(k))
        this.fail(prefix ? `${prefix}.${k}` : k, `unknown key (known: ${allowed.join(", ")})`);
    }
  }
  str(x: unknown, key: string): string {
    if (typeof x !== "string") this.fail(key, `want a string, got ${typeof x}`);
    return x as string;
  }
  strings(x: unknown, key: string): string[] {
    if (typeof x === "string") return [x];
    if (!Array.isArray(x) || x.some((e) => typeof e !== "string")) this.fail(key, "want a list of strings");
    return x as string[];
  }
  bool(x: unknown, key: string): boolean {
    if (typeof x !== "boolean") this.fail(key, `want true or false, got ${JSON.stringify(x)}`);
    return x as boolean;
  }
  posInt(x: unknown, key: string): number {
    const n = typeof x === "bigint" ? Number(x) : x;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1)
      this.fail(key, `want a positive integer, got ${String(x)}`);
    return n as number;
  }
  oneOf<T extends string>(x: unknown, key: string, values: readonly T[]): T {
    const s = this.str(x, key);
    if (!values.includes(s as T))
      this.fail(key, `want one of ${values.join(", ")}, got ${JSON.stringify(s)}`);
    return s as T;
  }
  absPath(x: unknown, key: string): string {
    const s = this.str(x, key);
    if (!s.startsWith("/")) this.fail(key, `want an absolute path, got ${JSON.stringify(s)}`);
    return s;
  }
  address(a: string, key: string): string {
    if (!/^unix:\/\/\/.+|^tcp:\/\/[^/]+:\d+$/.test(a))
      this.fail(key, `want unix:///path or tcp://host:port, got ${JSON.stringify(a)}`);
    return a;
  }
  gcPolicies(x: unknown, key: string): GCPolicyConfig[] {
    if (!Array.isArray(x)) this.fail(key, "want an array of tables ([[...gcpolicy]])");
    return (x as unknown[]).map((raw, i) => {
      const k = `${key}[${i}]`;
      const t = this.table(raw, k);
      this.only(t, k, [
        "all",
        "filters",
        "keepDuration",
        "reservedSpace",
        "maxUsedSpace",
        "minFreeSpace",
        "keepBytes",
      ]);
      const p: GCPolicyConfig = {};
      if (t.all !== undefined) p.all = this.bool(t.all, `${k}.all`);
      if (t.filters !== undefined) p.filters = this.strings(t.filters, `${k}.filters`);
      for (const f of [
        "keepDuration",
        "reservedSpace",
        "maxUsedSpace",
        "minFreeSpace",
        "keepBytes",
      ] as const) {
        const val = t[f];
        if (val === undefined) continue;
        if (typeof val === "bigint") p[f] = Number(val);
        else if (typeof val === "number" || typeof val === "string") p[f] = val;
        else this.fail(`${k}.${f}`, 'want a number or a string like "512MB", "10%" or "48h"');
      }
      return p;
    });
  }
}
