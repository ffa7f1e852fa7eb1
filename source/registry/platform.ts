// Platforms ("linux/arm64/v8") and the choice of a manifest from an index, with containerd's
// rules: architecture aliases, default variants (arm64 is v8, arm is v7, amd64 is v1) and older
// variants that a newer CPU runs (arm/v7 takes v6 and v5 when there is no v7).

/** An OCI platform, as in an index's descriptors and an image config. */
export type Platform = {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
};

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: "amd64" },
  "x86-64": { architecture: "amd64" },
  amd64: { architecture: "amd64" },
  aarch64: { architecture: "arm64" },
  arm64: { architecture: "arm64" },
  armhf: { architecture: "arm", variant: "v7" },
  armel: { architecture: "arm", variant: "v6" },
  i386: { architecture: "386" },
  i686: { architecture: "386" },
  "386": { architecture: "386" },
};

/** Variants from oldest to newest; a CPU of one variant runs the earlier ones. */
const VARIANTS: Record<string, string[]> = {
  amd64: ["v1", "v2", "v3", "v4"],
  arm: ["v5", "v6", "v7", "v8"],
  arm64: ["v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9"],
};
const DEFAULT_VARIANT: Record<string, string> = { amd64: "v1", arm: "v7", arm64: "v8" };

/** The platform this process runs on. */
export function hostPlatform(): Platform {
  const arch = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" }[
    process.arch as string
  ];
  return normalizePlatform({ os: process.platform, architecture: arch ?? process.arch });
}

/** Lower-case os, canonical architecture and variant (with the architecture's default filled in). */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === "macos" ? "darwin" : p.os.toLowerCase();
  const alias = ARCH_ALIASES[p.architecture.toLowerCase()];
  const architecture = alias?.architecture ?? p.architecture.toLowerCase();
  let variant = (p.variant ?? alias?.variant ?? "").toLowerCase();
  if (architecture === "arm64" && variant === "8") variant = "v8";
  if (architecture === "arm" && /^[5-8]$/.test(variant)) variant = `v${variant}`;
  if (variant === "") variant = DEFAULT_VARIANT[architecture] ?? "";
  const out: Platform = { os, architecture };
  if (variant !== "") out.variant = variant;
  if (p["os.version"] !== undefined) out["os.version"] = p["os.version"];
  return out;
}

/** Parses "os/arch[/variant]" (as buildctl and Dockerfiles write it). */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new Error(
      `invalid platform ${JSON.stringify(s)}: want os/architecture[/variant], e.g. linux/arm64`,
    );
  }
  return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

/** "os/arch[/variant]", leaving out the default variants ("linux/arm64", "linux/arm/v7"). */
export function formatPlatform(p: Platform): string {
  const n = normalizePlatform(p);
  const showVariant =
    n.variant !== undefined && (n.architecture === "arm" || n.variant !== DEFAULT_VARIANT[n.architecture]);
  return `${n.os}/${n.architecture}${showVariant ? `/${n.variant}` : ""}`;
}

/**
 * How well `candidate` serves `want`: 0 is an exact match, higher is a compatible older
 * variant, undefined is no match.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 0;
  const order = VARIANTS[w.architecture];
  if (order === undefined) return undefined;
  const wi = order.indexOf(w.variant ?? "");
  const ci = order.indexOf(c.variant ?? "");
  if (wi < 0 || ci < 0 || ci > wi) return undefined;
  return wi - ci;
}

/** The index (into `candidates`) of the best match for `want`; the first wins a tie. */
export function bestPlatformMatch(want: Platform, candidates: (Platform | undefined)[]): number | undefined {
  let best: number | undefined;
  let bestRank = Number.POSITIVE_INFINITY;
  candidates.forEach((c, i) => {
    if (c === undefined) return;
    const rank = platformRank(want, c);
    if (rank !== undefined && rank < bestRank) {
      best = i;
      bestRank = rank;
    }
  });
  return best;
}
