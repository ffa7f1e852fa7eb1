// Runs a Frontend written for the daemon (dockerfile.v0) inside a frontend image: the same code
// gets a FrontendBridge backed by the gateway client, so the built-in frontend and its image
// give the same definitions, and the same results.
import type { Frontend, FrontendBridge, FrontendResult } from "../../types.ts";
import type { WorkerRef } from "../../../worker/types.ts";
import type { BuildResult, GatewayClient, Reference, SolveResult } from "./client.ts";
import { GatewaySolveError } from "./client.ts";

/** A daemon ref seen from the container: releasing it is the daemon's business. */
interface RemoteRef extends WorkerRef {
  readonly reference: Reference;
}

function remote(r: Reference | undefined): RemoteRef | undefined {
  if (!r) return undefined;
  const ref: RemoteRef = { id: r.id, reference: r, clone: () => ref, release: async () => {} };
  return ref;
}

function idOf(ref: WorkerRef): string {
  return ref.id;
}

function frontendResult(r: SolveResult): FrontendResult {
  const refs = r.refs
    ? Object.fromEntries(Object.entries(r.refs).map(([k, v]) => [k, remote(v)!]))
    : undefined;
  return { ref: remote(r.ref), refs, metadata: r.metadata };
}

/** A FrontendBridge over the gateway client; `solveError` turns a failed solve into the error type the frontend expects. */
export function bridgeFromClient(
  c: GatewayClient,
  opts: {
    signal?: AbortSignal;
    solveError?: (e: GatewaySolveError) => Error;
    frontendOpts?: Record<string, string>;
    inputs?: Record<string, Uint8Array>;
  } = {},
): FrontendBridge {
  const mapError = (e: unknown) =>
    e instanceof GatewaySolveError && opts.solveError ? opts.solveError(e) : e;
  const bridge: FrontendBridge = {
    solve: async (definition) => {
      try {
        return remote((await c.solve({ definition })).ref);
      } catch (e) {
        throw mapError(e);
      }
    },
    readFile: (ref, path, o) => c.readFile(idOf(ref), path, { offset: o?.offset, length: o?.limit }),
    resolveImageConfig: async (ref, o) => {
      const [os, architecture, variant] = (o.platform ?? "").split("/");
      const r = await c.resolveImageConfig(ref, {
        platform: os && architecture ? { os, architecture, variant } : undefined,
      });
      return { digest: r.digest, config: r.config };
    },
    warn: (message, detail = []) => void c.warn(message, { detail }).catch(() => {}),
    sessionId: c.sessionId || undefined,
    opts: opts.frontendOpts ?? c.opts,
    inputs: opts.inputs ?? {},
    signal: opts.signal ?? new AbortController().signal,
    frontend: (name) => ({
      solve: async (child) => {
        try {
          return frontendResult(
            await c.solve({ frontend: name, frontendOpts: child.opts, frontendInputs: child.inputs }),
          );
        } catch (e) {
          throw mapError(e);
        }
      },
    }),
    progress: (s) => {
      for (const w of s.warnings ?? [])
        void c.warn(w.short, { detail: w.detail, url: w.url }).catch(() => {});
    },
  };
  return bridge;
}

/** A daemon frontend's result as the gateway's BuildResult (its refs are remote refs). */
export function buildResult(r: FrontendResult): BuildResult {
  const ref = (w: WorkerRef | undefined) => (w as RemoteRef | undefined)?.reference;
  return {
    ref: ref(r.ref),
    refs: r.refs ? Object.fromEntries(Object.entries(r.refs).map(([k, v]) => [k, ref(v)!])) : undefined,
    metadata: r.metadata,
  };
}

/** Runs a daemon Frontend with the gateway client: the body of a frontend image's build function. */
export async function solveWithFrontend(
  c: GatewayClient,
  frontend: Frontend,
  opts: Parameters<typeof bridgeFromClient>[1] = {},
): Promise<BuildResult> {
  const inputs = opts.inputs ?? (c.supports("frontend.inputs") ? await c.inputs() : {});
  return buildResult(await frontend.solve(bridgeFromClient(c, { ...opts, inputs })));
}
