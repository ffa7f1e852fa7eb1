// gateway.v0: a frontend that lives in an image. The image is pulled like any other (through
// the build, so its pull shows in the progress and is cached), run in a container with a
// writable layer on top, the build's options in its environment (BuildKit's variables), and
// LLBBridge served on its stdin and stdout. Whatever it Returns becomes the build's result.
// A frontend that crashes, hangs until cancelled, breaks the protocol or returns a ref it was
// never given fails the build with a message naming it; its container and layer are removed.
import { randomBytes } from "node:crypto";
import { Duplex, PassThrough } from "node:stream";
import type { CacheManager } from "../../cache/manager.ts";
import type { ImmutableRef } from "../../cache/types.ts";
import type { Executor } from "../../executor/types.ts";
import { formatPlatform, image, type PlatformSpec } from "../../llb/index.ts";
import { LLBBridge } from "../../proto/gen/moby/buildkit/v1/frontend/gateway_pb.ts";
import type { Logger } from "../../util/log.ts";
import { VertexLog } from "../../worker/vertex-log.ts";
import type { Frontend, FrontendBridge, FrontendResult } from "../types.ts";
import { checkAllowList, frontendAllowed } from "./allowed.ts";
import { LLBBridgeForwarder } from "./forwarder.ts";
import {
  ENV_EXPORTED_PRODUCT,
  ENV_SESSION_ID,
  ENV_WORKERS,
  EXPORTED_PRODUCT,
  OPT_FRONTEND_CAPS,
  OPT_SOURCE,
  optionsToEnv,
} from "./protocol.ts";
import { serveOnStream } from "./serve.ts";

/** How long a frontend may keep running after its Return before it is stopped. */
const AFTER_RETURN_GRACE_MS = 10_000;
/** The image label listing the capabilities a frontend image supports (BuildKit's). */
const LABEL_FRONTEND_CAPS = "moby.buildkit.frontend.caps";

/** What the worker the frontend runs on looks like, for Ping and BUILDKIT_WORKERS. */
export interface GatewayWorker {
  id: string;
  labels: Record<string, string>;
  platforms: PlatformSpec[];
}

export interface GatewayFrontendOptions {
  executor: Executor;
  cache: CacheManager;
  /** Where refs are mounted to be read. */
  mountRoot?: string;
  /** Frontend images this daemon runs (`[frontend] allowed`); empty: any. */
  allowed: readonly string[];
  worker: GatewayWorker;
  log?: Logger;
}

/** Runtime fields of an image config the frontend container needs. */
interface FrontendImageConfig {
  config?: {
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string>;
  };
}

export class GatewayFrontend implements Frontend {
  readonly #o: GatewayFrontendOptions;

  constructor(o: GatewayFrontendOptions) {
    checkAllowList(o.allowed);
    this.#o = o;
  }

  async solve(bridge: FrontendBridge): Promise<FrontendResult> {
    const source = bridge.opts[OPT_SOURCE];
    if (!source) {
      throw new Error(
        "gateway.v0 needs the frontend image: --opt source=IMAGE (or # syntax=IMAGE in a Dockerfile)",
      );
    }
    if (!frontendAllowed(source, this.#o.allowed)) {
      throw new Error(
        `frontend image ${JSON.stringify(source)} is not allowed by this daemon: it runs only ${this.#o.allowed.join(", ")} ([frontend] allowed in buildd.toml)`,
      );
    }
    const label = `frontend ${source}`;
    const platform = this.#o.worker.platforms[0]!;
    let resolved: { digest: string; config: unknown };
    try {
      resolved = await bridge.resolveImageConfig(source, { platform: formatPlatform(platform) });
    } catch (e) {
      throw new Error(`resolving ${label}: ${(e as Error).message}`);
    }
    const config = (resolved.config as FrontendImageConfig).config ?? {};
    checkCaps(bridge.opts[OPT_FRONTEND_CAPS], config.Labels?.[LABEL_FRONTEND_CAPS], label);
    const pinned = `${source.replace(/@.*$/, "")}@${resolved.digest}`;
    const imageRef = (await bridge.solve(image(pinned).marshal({ platform }).bytes)) as
      | ImmutableRef
      | undefined;
    if (!imageRef) throw new Error(`${label}: the image has no filesystem`);

    const vertex = `gateway-${randomBytes(8).toString("hex")}`;
    const name = `[frontend] ${source}`;
    const started = Date.now();
    bridge.progress({ vertexes: [{ digest: vertex, inputs: [], name, started }] });
    try {
      const result = await this.#run(bridge, label, pinned, imageRef, config, vertex);
      bridge.progress({ vertexes: [{ digest: vertex, inputs: [], name, started, completed: Date.now() }] });
      return result;
    } catch (e) {
      bridge.progress({
        vertexes: [
          { digest: vertex, inputs: [], name, started, completed: Date.now(), error: (e as Error).message },
        ],
      });
      throw e;
    }
  }

  async #run(
    bridge: FrontendBridge,
    label: string,
    pinned: string,
    imageRef: ImmutableRef,
    config: NonNullable<FrontendImageConfig["config"]>,
    vertex: string,
  ): Promise<FrontendResult> {
    const w = this.#o.worker;
    const forwarder = new LLBBridgeForwarder({
      bridge,
      label,
      workers: [
        {
          ID: w.id,
          Labels: w.labels,
          platforms: w.platforms.map((p) => ({
            $typeName: "pb.Platform",
            OS: p.os,
            Architecture: p.architecture,
            Variant: p.variant ?? "",
            OSVersion: "",
            OSFeatures: [],
          })),
          GCPolicy: [],
        },
      ],
      mountBase: this.#o.mountRoot,
    });
    const env = [
      ...(config.Env ?? []),
      ...optionsToEnv(bridge.opts),
      `${ENV_SESSION_ID}=${bridge.sessionId ?? ""}`,
      `${ENV_WORKERS}=${JSON.stringify([{ id: w.id, labels: w.labels, platforms: w.platforms }])}`,
      `${ENV_EXPORTED_PRODUCT}=${EXPORTED_PRODUCT}`,
    ];
    const entrypoint = config.Entrypoint ?? [];
    const cmd = config.Cmd ?? [];
    const args = entrypoint.length > 0 ? [...entrypoint, ...cmd] : cmd.length > 0 ? cmd : ["/run"];

    // The daemon's end of the frontend's stdio: its stdout in, its stdin out.
    const fromContainer = new PassThrough();
    const toContainer = new PassThrough();
    const stream = Duplex.from({ readable: fromContainer, writable: toContainer });
    for (const s of [fromContainer, toContainer, stream]) s.on("error", () => {});
    const server = serveOnStream(stream, (r) => r.service(LLBBridge, forwarder.service()));
    const stop = new AbortController();
    const signal = AbortSignal.any([bridge.signal, stop.signal]);
    let protocolError: Error | undefined;
    let running = true;
    void server.closed.then((err) => {
      // The connection broke, or was hung up, while the frontend still ran without returning:
      // it cannot be talked to any more.
      if (running && !forwarder.outcome) {
        protocolError = err ?? new Error("it closed the connection without returning a result");
        stop.abort(new Error(`${label}: its gRPC connection broke`));
      }
    });
    let grace: NodeJS.Timeout | undefined;
    void forwarder.returned.then(() => {
      grace = setTimeout(
        () => stop.abort(new Error(`${label} kept running after it returned`)),
        AFTER_RETURN_GRACE_MS,
      );
    });
    const output = new VertexLog(vertex, new Set([bridge.progress]));
    const rootfs = await this.#o.cache.newMutable(imageRef, { description: `${label} (running)` });
    let runError: unknown;
    try {
      this.#o.log?.info("frontend starting", { image: pinned });
      await this.#o.executor.run(
        `frontend-${randomBytes(8).toString("hex")}`,
        await rootfs.mount(),
        [],
        {
          args,
          env,
          cwd: config.WorkingDir || "/",
          network: "none",
          security: "sandbox",
          removeMountStubsRecursive: true,
        },
        {
          stdin: toContainer,
          stdout: (c) => {
            if (!fromContainer.destroyed && !fromContainer.writableEnded) fromContainer.write(c);
          },
          stderr: (c) => output.write(2, c),
        },
        signal,
      );
    } catch (e) {
      runError = e;
    } finally {
      running = false;
      clearTimeout(grace);
      fromContainer.end();
      server.close();
      await rootfs
        .release()
        .catch((e) => this.#o.log?.warn("releasing a frontend's layer failed", { error: e }));
    }

    if (bridge.signal.aborted) throw bridge.signal.reason;
    const outcome = forwarder.outcome;
    if (outcome?.ok) return outcome.result;
    if (outcome) throw outcome.error;
    const tail = output.lastLines(10);
    const said = tail.length > 0 ? `; its last output:\n${tail.join("\n")}` : "";
    if (protocolError) {
      throw new Error(
        `${label} broke the gateway protocol (${protocolError.message}): a frontend must speak gRPC on stdout and write nothing else there${said}`,
      );
    }
    const exitCode = (runError as { exitCode?: unknown } | undefined)?.exitCode;
    if (typeof exitCode === "number") {
      throw new Error(`${label} exited with code ${exitCode} before it returned a result${said}`);
    }
    if (runError) throw new Error(`running ${label}: ${(runError as Error).message}`);
    throw new Error(`${label} exited without returning a result${said}`);
  }
}

/** Requested capabilities ("a,b+forward") must be ones the image declares; "+forward" ones may be missing. */
function checkCaps(requested: string | undefined, declared: string | undefined, label: string): void {
  if (!requested) return;
  const has = new Set(
    (declared ?? "")
      .split(",")
      .map((c) => c.trim())
      .filter(Boolean),
  );
  for (const raw of requested
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean)) {
    if (raw.endsWith("+forward")) continue;
    if (!has.has(raw)) {
      throw new Error(
        `${label} does not support the capability ${JSON.stringify(raw)} the build asks for (its label ${LABEL_FRONTEND_CAPS} lists ${[...has].join(", ") || "none"})`,
      );
    }
  }
}
