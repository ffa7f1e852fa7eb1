// Platforms in a Dockerfile build: parsing and normalizing "linux/arm64" strings the way
// containerd does, and the automatic platform ARGs (BUILDPLATFORM, TARGETOS, ...) every
// Dockerfile can use without declaring them in the global scope.
import { hostPlatform, type PlatformSpec } from "../../../llb/index.ts";

const ARCH_ALIASES: Record<string, [string, string?]> = {
  x86_64: ["amd64"],
  "x86-64": ["amd64"],
  aarch64: ["arm64"],
  armhf: ["arm", "v7"],
  armel: ["arm", "v6"],
  i386: ["386"],
  i686: ["386"],
};
const KNOWN_OS = new Set([
  "linux",
  "windows",
  "darwin",
  "freebsd",
  "netbsd",
  "openbsd",
  "solaris",
  "illumos",
  "aix",
  "plan9",
  "android",
  "ios",
  "js",
  "wasip1",
  "dragonfly",
]);

/** containerd's Normalize: canonical arch names and variants ("arm64/v8" → "arm64"). */
export function normalizePlatform(p: PlatformSpec): PlatformSpec {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  const alias = ARCH_ALIASES[arch];
  if (alias) {
    arch = alias[0];
    if (alias[1] && !variant) variant = alias[1];
  }
  if (arch === "amd64" && (variant === "v1" || variant === "")) variant = undefined;
  if (arch === "arm64" && (variant === "v8" || variant === "8" || variant === "")) variant = undefined;
  if (arch === "arm") {
    if (!variant || variant === "7") variant = "v7";
    else if (variant === "5" || variant === "6" || variant === "8") variant = `v${variant}`;
  }
  return variant ? { os, architecture: arch, variant } : { os, architecture: arch };
}

/**
 * Parses "os/arch[/variant]", or just an OS or an architecture (the other part from the
 * host), normalized. Throws naming the string on anything else.
 */
export function parsePlatformSpec(s: string): PlatformSpec {
  const parts = s.split("/");
  const bad = (why: string) => new Error(`invalid platform ${JSON.stringify(s)}: ${why}`);
  if (parts.some((p) => p === "" || !/^[A-Za-z0-9_.-]+$/.test(p))) throw bad("want os/arch[/variant]");
  const host = hostPlatform();
  switch (parts.length) {
    case 1: {
      const one = parts[0]!.toLowerCase();
      if (KNOWN_OS.has(one)) return normalizePlatform({ os: one, architecture: host.architecture });
      return normalizePlatform({ os: "linux", architecture: one });
    }
    case 2:
      return normalizePlatform({ os: parts[0]!, architecture: parts[1]! });
    case 3:
      return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2]! });
    default:
      throw bad("want os/arch[/variant]");
  }
}

/** "linux/arm/v7". */
export function formatPlatformSpec(p: PlatformSpec): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** The platforms of one conversion. */
export interface PlatformOpt {
  targetPlatform: PlatformSpec;
  buildPlatforms: PlatformSpec[];
  /** No target was asked for: it is the build platform, and base images may pick theirs. */
  implicitTarget: boolean;
}

/** Resolves target and build platforms from the options. */
export function platformOpt(target?: PlatformSpec, build?: PlatformSpec[]): PlatformOpt {
  let buildPlatforms = build && build.length > 0 ? build : undefined;
  if (target && !buildPlatforms) buildPlatforms = [hostPlatform()];
  buildPlatforms ??= [hostPlatform()];
  return {
    targetPlatform: target ?? buildPlatforms[0]!,
    buildPlatforms,
    implicitTarget: target === undefined,
  };
}

/** The automatic global ARGs, in BuildKit's order; build args of the same name override them. */
export function defaultArgs(
  po: PlatformOpt,
  overrides: Readonly<Record<string, string>>,
  targetStage: string,
) {
  const bp = po.buildPlatforms[0]!;
  const tp = po.targetPlatform;
  const pairs: [string, string][] = [
    ["BUILDPLATFORM", formatPlatformSpec(bp)],
    ["BUILDOS", bp.os],
    ["BUILDOSVERSION", ""],
    ["BUILDARCH", bp.architecture],
    ["BUILDVARIANT", bp.variant ?? ""],
    ["TARGETPLATFORM", formatPlatformSpec(tp)],
    ["TARGETOS", tp.os],
    ["TARGETOSVERSION", ""],
    ["TARGETARCH", tp.architecture],
    ["TARGETVARIANT", tp.variant ?? ""],
    ["TARGETSTAGE", targetStage],
  ];
  const env = new Map<string, string>();
  for (const [k, v] of pairs) env.set(k, Object.hasOwn(overrides, k) ? overrides[k]! : v);
  return env;
}

/** The platform named by TARGET* variables in an environment, for progress names. */
export function platformFromEnv(get: (k: string) => string | undefined): PlatformSpec | undefined {
  const tp = get("TARGETPLATFORM");
  if (tp !== undefined) {
    try {
      return parsePlatformSpec(tp);
    } catch {
      // fall through to the parts
    }
  }
  const os = get("TARGETOS");
  const arch = get("TARGETARCH");
  const variant = get("TARGETVARIANT");
  if (os === undefined && arch === undefined && variant === undefined) return undefined;
  return { os: os ?? "", architecture: arch ?? "", ...(variant ? { variant } : {}) };
}

/** "->arm64" or "->linux/arm64" when a step runs on one platform for another. */
export function formatTargetPlatform(base: PlatformSpec, target: PlatformSpec | undefined): string {
  if (!target) return "";
  const p = normalizePlatform({
    os: target.os || base.os,
    architecture: target.architecture || base.architecture,
    variant: target.variant,
  });
  if (p.os === base.os && p.architecture !== base.architecture) {
    return `->${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
  }
  if (p.os !== base.os) return `->${formatPlatformSpec(p)}`;
  return "";
}
