// Progress names of the ops a Dockerfile produces, as BuildKit prints them:
// "[builder 2/5] RUN make", "[linux/arm64 stage-1 1/3] FROM ...", "[internal] load build context".
import type { PlatformSpec } from "../../../llb/index.ts";
import { formatPlatformSpec, formatTargetPlatform, platformFromEnv } from "./platform.ts";

/** Names of the internal steps a Dockerfile build shows. */
export const INTERNAL_NAMES = {
  loadDefinition: (filename: string) => `[internal] load build definition from ${filename}`,
  loadDockerignore: "[internal] load .dockerignore",
  loadContext: "[internal] load build context",
  loadMetadata: (ref: string, platform?: PlatformSpec) =>
    `[${platform ? `${formatPlatformSpec(platform)} ` : ""}internal] load metadata for ${ref}`,
  inlineDocument: "[internal] preparing inline document",
  cacheMountPermissions: "[internal] settings cache mount permissions",
} as const;

/** The counters behind "[stage N/M]" for one stage. */
export interface StepCounter {
  stageName: string;
  cmdIndex: number;
  cmdTotal: number;
  cmdIsOnBuild: boolean;
}

/**
 * "[platform stage N/M] text", counting the step. Stages without counted steps (images named
 * only in COPY --from) get the bare text. N is padded to M's width.
 */
export function prefixCommand(
  counter: StepCounter,
  text: string,
  opts: { prefixPlatform: boolean; platform?: PlatformSpec; env?: (k: string) => string | undefined },
): string {
  if (counter.cmdTotal === 0) return text;
  let out = "[";
  if (opts.prefixPlatform && opts.platform) {
    const target = opts.env ? platformFromEnv(opts.env) : undefined;
    out += `${formatPlatformSpec(opts.platform)}${formatTargetPlatform(opts.platform, target)} `;
  }
  if (counter.stageName !== "") out += `${counter.stageName} `;
  counter.cmdIndex++;
  const width = 1 + Math.floor(Math.log10(counter.cmdTotal));
  out += `${String(counter.cmdIndex).padStart(width)}/${counter.cmdTotal}] `;
  if (counter.cmdIsOnBuild) out += "ONBUILD ";
  return out + text;
}

/** The instruction name in upper case, the rest as written ("run make" → "RUN make"). */
export function uppercaseCmd(s: string): string {
  const sp = s.indexOf(" ");
  return sp < 0 ? s.toUpperCase() : s.slice(0, sp).toUpperCase() + s.slice(sp);
}

/** The first line of a heredoc body, with "..." when there are more. */
export function summarizeHeredoc(doc: string): string {
  const lines = doc.trim().replaceAll("\r\n", "\n").split("\n");
  return lines.length > 1 ? `${lines[0]}...` : lines[0]!;
}
