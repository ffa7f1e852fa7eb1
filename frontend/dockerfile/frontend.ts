// The dockerfile.v0 frontend: reads the Dockerfile and .dockerignore through the client's
// session, converts to LLB, solves it through the bridge (the same bridge a frontend image
// uses) and hands the image config to the exporters. Errors name the file and the lines.
import { local, parsePlatform, type PlatformSpec } from "../../llb/index.ts";
import { SolveError } from "../../solver/solver.ts";
import type { Frontend, FrontendBridge, FrontendResult } from "../types.ts";
import { stateFromDefinition } from "../gateway/client/state.ts";
import {
  DockerfileError,
  dockerfileToLLB,
  findDirective,
  formatSourceLines,
  imageToJSON,
  type NamedContextValue,
  type Range,
} from "./index.ts";

const DEFAULT_FILENAME = "Dockerfile";

/** Reads BuildKit's frontend options: filename, target, build-arg:*, label:*, platform, ... */
export function frontendOptions(opts: Record<string, string>) {
  const prefixed = (p: string) =>
    Object.fromEntries(
      Object.entries(opts)
        .filter(([k]) => k.startsWith(p))
        .map(([k, v]) => [k.slice(p.length), v]),
    );
  const noCache = opts["no-cache"];
  let platforms: PlatformSpec[] | undefined;
  if (opts.platform) {
    platforms = opts.platform.split(",").map((p) => {
      try {
        return parsePlatform(p.trim());
      } catch (e) {
        throw new Error(`--opt platform=${opts.platform}: ${(e as Error).message}`);
      }
    });
  }
  const addHosts = (opts["add-hosts"] ?? "")
    .split(",")
    .filter((h) => h.trim() !== "")
    .map((h) => {
      const i = h.indexOf("=") >= 0 ? h.indexOf("=") : h.indexOf(":");
      if (i <= 0) throw new Error(`--opt add-hosts: ${JSON.stringify(h)} is not host=ip`);
      return { host: h.slice(0, i), ip: h.slice(i + 1) };
    });
  return {
    filename: opts.filename || DEFAULT_FILENAME,
    target: opts.target || undefined,
    buildArgs: prefixed("build-arg:"),
    labels: prefixed("label:"),
    contexts: prefixed("context:"),
    platforms,
    noCache:
      noCache === undefined ? undefined : noCache === "" ? true : noCache.split(",").map((s) => s.trim()),
    addHosts,
  };
}

/** The option that names a frontend image to hand the build to, overriding `# syntax=`. */
const KEY_SYNTAX_ARG = "build-arg:BUILDKIT_SYNTAX";
/** Frontend inputs that replace the client's local dirs, as in BuildKit. */
const INPUT_DOCKERFILE = "dockerfile";
const INPUT_CONTEXT = "context";

export class DockerfileFrontend implements Frontend {
  async solve(bridge: FrontendBridge): Promise<FrontendResult> {
    const o = frontendOptions(bridge.opts);
    const sessionId = bridge.sessionId;
    // The Dockerfile and its own ignore file travel as a tiny local source of their own, unless
    // the caller passed them as the "dockerfile" input (a frontend generating a Dockerfile).
    const dfInput = bridge.inputs[INPUT_DOCKERFILE];
    const dfDir = dfInput
      ? undefined
      : local("dockerfile", {
          include: [o.filename, `${o.filename}.dockerignore`],
          sessionId,
          sharedKeyHint: o.filename,
          customName: `[internal] load build definition from ${o.filename}`,
        });
    const dfRef = await bridge.solve(dfInput ?? dfDir!.marshal().bytes);
    if (!dfRef) throw new Error(`the build definition ${o.filename} was not found in the dockerfile dir`);
    const dockerfile = await bridge.readFile(dfRef, o.filename).catch((e: Error) => {
      throw new Error(
        `failed to read the Dockerfile: open ${o.filename}: ${/ENOENT|no such file/.test(e.message) ? "no such file or directory" : e.message}`,
      );
    });

    const forwarded = await forwardToSyntaxImage(bridge, dockerfile);
    if (forwarded) return forwarded;

    const contextInput = bridge.inputs[INPUT_CONTEXT];
    let dockerignore = await bridge.readFile(dfRef, `${o.filename}.dockerignore`).catch(() => undefined);
    // Without a client session there is no local context to read it from (a frontend's nested build).
    if (dockerignore === undefined && (contextInput || sessionId)) {
      const ctxIgnore = contextInput
        ? undefined
        : local("context", {
            include: [".dockerignore"],
            sessionId,
            // A persistent copy of its own: sharing the context's would make each sync delete
            // what the other selected, and transfer the whole context again every build.
            sharedKeyHint: "context-dockerignore",
            customName: "[internal] load .dockerignore",
          });
      const ref = await bridge.solve(contextInput ?? ctxIgnore!.marshal().bytes);
      dockerignore = ref ? await bridge.readFile(ref, ".dockerignore").catch(() => undefined) : undefined;
    }

    const namedContexts: Record<string, NamedContextValue> = { ...o.contexts };
    const text = new TextDecoder().decode(dockerfile);
    const targetPlatform = o.platforms?.[0];
    let converted: Awaited<ReturnType<typeof dockerfileToLLB>>;
    try {
      converted = await dockerfileToLLB({
        dockerfile,
        filename: o.filename,
        target: o.target,
        buildArgs: o.buildArgs,
        labels: o.labels,
        targetPlatform,
        noCache: o.noCache,
        addHosts: o.addHosts,
        namedContexts,
        dockerignore,
        localContext: (lo) =>
          lo.name === "context" && contextInput
            ? stateFromDefinition(contextInput)
            : local(lo.name, {
                exclude: lo.exclude.length ? lo.exclude : undefined,
                followPaths: lo.followPaths.length ? lo.followPaths : undefined,
                sessionId,
                sharedKeyHint: lo.name,
                customName:
                  lo.name === "context"
                    ? "[internal] load build context"
                    : `[context ${lo.name}] load from client`,
              }),
        resolveImageConfig: async (ref, ro) => {
          const p = ro.platform;
          const r = await bridge.resolveImageConfig(ref, {
            platform: `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`,
          });
          return { digest: r.digest, config: r.config as object };
        },
      });
    } catch (e) {
      if (e instanceof DockerfileError) throw new Error(e.format());
      throw e;
    }
    for (const w of converted.warnings) {
      const where = w.location[0] ? `${o.filename}:${w.location[0].start.line}` : o.filename;
      bridge.warn(`${w.rule}: ${w.message} (${where})`, w.url ? [w.description, w.url] : [w.description]);
    }
    let ref: FrontendResult["ref"];
    try {
      ref = await bridge.solve(converted.state.marshal({ platform: converted.targetPlatform }).bytes);
    } catch (e) {
      if (e instanceof SolveError) {
        const ranges = converted.sourceMap.locations.get(e.vertex.name);
        if (ranges?.length) throw new Error(withSource(e.message, o.filename, text, ranges, e.vertex.name));
      }
      throw e;
    }
    return {
      ref,
      metadata: {
        "containerimage.config": new TextEncoder().encode(JSON.stringify(imageToJSON(converted.image))),
      },
    };
  }
}

/**
 * Hands the build to the frontend image named by `--opt build-arg:BUILDKIT_SYNTAX` or the
 * Dockerfile's `# syntax=` directive (through gateway.v0, with the same options and inputs), as
 * BuildKit does. The `cmdline` option marks a build that was handed over already: the image,
 * often a Dockerfile frontend itself, does not hand it over again.
 */
async function forwardToSyntaxImage(
  bridge: FrontendBridge,
  dockerfile: Uint8Array,
): Promise<FrontendResult | undefined> {
  if (bridge.opts.cmdline !== undefined) return undefined;
  let cmdline: string | undefined = bridge.opts[KEY_SYNTAX_ARG]?.trim();
  if (!cmdline) {
    cmdline = findDirective("syntax", new TextDecoder().decode(dockerfile))?.value.trim();
  }
  if (!cmdline) return undefined;
  const source = cmdline.split(/\s+/)[0]!;
  const gateway = bridge.frontend("gateway.v0");
  if (!gateway) {
    throw new Error(
      `the Dockerfile asks for frontend image ${source} (# syntax=), but this daemon has no gateway.v0 frontend to run it`,
    );
  }
  return gateway.solve({ ...bridge, opts: { ...bridge.opts, source, cmdline } });
}

/** A failing step's error with the Dockerfile lines that made it, as a compiler would show them. */
function withSource(message: string, filename: string, text: string, ranges: Range[], step: string): string {
  const first = ranges[0]!.start.line;
  const lines = formatSourceLines(text, ranges, filename);
  return `${filename}:${first}: ${step}\n${lines}\n${message}`;
}
