// The daemon's side of the gateway API: LLBBridge served for one frontend run, on top of the
// build's FrontendBridge. Refs handed to the frontend are ids in a table; the refs themselves
// stay owned by the build's job (released when the build ends), so a frontend that crashes or
// forgets a ref leaks nothing. The frontend's Return is checked here: only refs it was given
// can come back.
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { LLBError } from "../../llb/definition.ts";
import { APICapSchema } from "../../proto/gen/moby/buildkit/v1/apicaps/caps_pb.ts";
import {
  type LLBBridge,
  type Ref,
  RefSchema,
  type Result,
  ResultSchema,
} from "../../proto/gen/moby/buildkit/v1/frontend/gateway_pb.ts";
import type { WorkerRecord } from "../../proto/gen/moby/buildkit/v1/types/worker_pb.ts";
import { type Definition, DefinitionSchema } from "../../proto/gen/pb/ops_pb.ts";
import { SolveError } from "../../solver/solver.ts";
import type { WorkerRef } from "../../worker/types.ts";
import type { FrontendBridge, FrontendResult } from "../types.ts";
import { readRefDir, statRefFile } from "./files.ts";
import { GATEWAY_CAPS, HEADER_VERTEX_DIGEST, HEADER_VERTEX_NAME, LLB_CAPS } from "./protocol.ts";

/** A larger ReadFile answer is refused: the frontend should read in ranges. */
const MAX_READ_BYTES = 32 << 20;
const DEFAULT_READ_BYTES = 16 << 20;

export interface ForwarderOptions {
  bridge: FrontendBridge;
  /** Names the frontend in errors, e.g. `frontend 127.0.0.1:5000/fe:1`. */
  label: string;
  /** What Ping reports about the workers. */
  workers: Omit<WorkerRecord, "$typeName" | "$unknown">[];
  /** Where refs are mounted to be read. */
  mountBase?: string;
}

/** What the frontend returned: a result, or the error it failed with. */
export type ReturnOutcome = { ok: true; result: FrontendResult } | { ok: false; error: Error };

/** One frontend run's LLBBridge: its ref table and the outcome of its Return. */
export class LLBBridgeForwarder {
  readonly #o: ForwarderOptions;
  readonly #refs = new Map<string, WorkerRef>();
  readonly #ids = new Map<WorkerRef, string>();
  /** The definition each ref was solved from, so that a client can build on it. */
  readonly #definitions = new WeakMap<WorkerRef, Uint8Array>();
  readonly #bridge: FrontendBridge;
  #outcome: ReturnOutcome | undefined;
  readonly #returned: Promise<ReturnOutcome>;
  #settle!: (o: ReturnOutcome) => void;

  constructor(o: ForwarderOptions) {
    this.#o = o;
    this.#returned = new Promise((resolve) => (this.#settle = resolve));
    // Every solve below this frontend, nested frontends' included, records its definition.
    this.#bridge = { ...o.bridge, solve: (def) => this.#solveDefinition(o.bridge, def) };
  }

  /** The frontend's Return, once it arrives. */
  get returned(): Promise<ReturnOutcome> {
    return this.#returned;
  }

  /** The outcome so far (undefined until the frontend returned). */
  get outcome(): ReturnOutcome | undefined {
    return this.#outcome;
  }

  /** How many refs the frontend was handed (for tests and logs). */
  get refCount(): number {
    return this.#refs.size;
  }

  async #solveDefinition(parent: FrontendBridge, def: Uint8Array): Promise<WorkerRef | undefined> {
    const ref = await parent.solve(def);
    if (ref) this.#definitions.set(ref, def);
    return ref;
  }

  #add(ref: WorkerRef | undefined): string {
    if (!ref) return "";
    const known = this.#ids.get(ref);
    if (known) return known;
    const id = randomBytes(12).toString("hex");
    this.#refs.set(id, ref);
    this.#ids.set(ref, id);
    return id;
  }

  #get(id: string, what: string): WorkerRef {
    const ref = this.#refs.get(id);
    if (!ref) {
      throw new ConnectError(
        `${what}: unknown ref ${JSON.stringify(id)}: refs are the ids Solve returned in this build`,
        Code.NotFound,
      );
    }
    return ref;
  }

  #pbRef(ref: WorkerRef | undefined): Ref {
    const def = ref && this.#definitions.get(ref);
    return create(RefSchema, {
      id: this.#add(ref),
      def: def ? fromBinary(DefinitionSchema, def) : undefined,
    });
  }

  /** A result as the wire carries it; refs get ids in this forwarder's table. */
  #pbResult(r: FrontendResult, arrayRefs: boolean): Result {
    const out = create(ResultSchema, { metadata: { ...r.metadata } });
    if (r.refs) {
      const entries = Object.entries(r.refs);
      out.result = arrayRefs
        ? {
            case: "refs",
            value: {
              $typeName: "moby.buildkit.v1.frontend.RefMap",
              refs: Object.fromEntries(entries.map(([k, v]) => [k, this.#pbRef(v)])),
            },
          }
        : {
            case: "refsDeprecated",
            value: {
              $typeName: "moby.buildkit.v1.frontend.RefMapDeprecated",
              refs: Object.fromEntries(entries.map(([k, v]) => [k, this.#add(v)])),
            },
          };
    } else {
      out.result = arrayRefs
        ? { case: "ref", value: this.#pbRef(r.ref) }
        : { case: "refDeprecated", value: this.#add(r.ref) };
    }
    return out;
  }

  /** The frontend's result with its ids turned back into refs; an id it was never given is an error. */
  #fromPbResult(r: Result | undefined): FrontendResult {
    const metadata = { ...(r?.metadata ?? {}) };
    const lookup = (id: string): WorkerRef | undefined => {
      if (id === "") return undefined;
      const ref = this.#refs.get(id);
      if (!ref)
        throw new Error(
          `${this.#o.label} returned a result with ref ${JSON.stringify(id)}, which it was never given (refs are the ids Solve returned)`,
        );
      return ref;
    };
    const mapOf = (refs: Record<string, string>) => {
      const out: Record<string, WorkerRef> = {};
      for (const [k, id] of Object.entries(refs)) {
        const ref = lookup(id);
        if (ref) out[k] = ref;
      }
      return out;
    };
    switch (r?.result.case) {
      case "ref":
        return { ref: lookup(r.result.value.id), metadata };
      case "refDeprecated":
        return { ref: lookup(r.result.value), metadata };
      case "refs":
        return {
          refs: mapOf(Object.fromEntries(Object.entries(r.result.value.refs).map(([k, v]) => [k, v.id]))),
          metadata,
        };
      case "refsDeprecated":
        return { refs: mapOf(r.result.value.refs), metadata };
      default:
        return { metadata };
    }
  }

  /** Ends the run with an outcome the daemon decided (a crash, a protocol error), unless it returned already. */
  fail(error: Error): void {
    if (this.#outcome) return;
    this.#outcome = { ok: false, error };
    this.#settle(this.#outcome);
  }

  service(): Partial<ServiceImpl<typeof LLBBridge>> {
    const bridge = this.#bridge;
    const caps = (ids: readonly string[]) => ids.map((ID) => create(APICapSchema, { ID, Enabled: true }));
    return {
      ping: async () => ({
        FrontendAPICaps: caps(GATEWAY_CAPS),
        LLBCaps: caps(LLB_CAPS),
        Workers: this.#o.workers,
      }),

      solve: async (req) => {
        let result: FrontendResult;
        try {
          if (req.Frontend !== "") {
            const fe = bridge.frontend(req.Frontend);
            if (!fe) {
              throw new ConnectError(
                `solve with frontend ${JSON.stringify(req.Frontend)}: this daemon has no such frontend`,
                Code.NotFound,
              );
            }
            result = await fe.solve({
              ...bridge,
              opts: { ...req.FrontendOpt },
              inputs: definitionsToBytes(req.FrontendInputs),
            });
          } else if (req.Definition && req.Definition.def.length > 0) {
            const ref = await bridge.solve(toBinary(DefinitionSchema, req.Definition));
            result = { ref, metadata: {} };
          } else {
            result = { metadata: {} };
          }
        } catch (e) {
          throw solveFailure(e);
        }
        if (!req.allowResultReturn) {
          if (result.refs) {
            throw new ConnectError(
              "solve: the result has several refs; set allowResultReturn to receive them",
              Code.FailedPrecondition,
            );
          }
          return { ref: this.#add(result.ref) };
        }
        return { result: this.#pbResult(result, req.allowResultArrayRef) };
      },

      readFile: async (req) => {
        const ref = this.#get(req.Ref, `reading ${req.FilePath}`);
        const offset = Number(req.Range?.Offset ?? 0n);
        const length = Number(req.Range?.Length ?? 0n);
        if (offset < 0 || length < 0) {
          throw new ConnectError(`reading ${req.FilePath}: negative offset or length`, Code.InvalidArgument);
        }
        if (length > MAX_READ_BYTES) {
          throw new ConnectError(
            `reading ${req.FilePath}: ${length} bytes at once is more than ${MAX_READ_BYTES}; read in ranges`,
            Code.InvalidArgument,
          );
        }
        try {
          const data = await bridge.readFile(ref, req.FilePath, {
            offset: offset || undefined,
            limit: length || DEFAULT_READ_BYTES,
          });
          return { Data: data };
        } catch (e) {
          throw fileError(e, `reading ${req.FilePath}`);
        }
      },

      readDir: async (req) => {
        const ref = this.#get(req.Ref, `listing ${req.DirPath}`);
        try {
          return { entries: await readRefDir(ref, req.DirPath, req.IncludePattern, this.#o.mountBase) };
        } catch (e) {
          throw fileError(e, `listing ${req.DirPath}`);
        }
      },

      statFile: async (req) => {
        const ref = this.#get(req.Ref, `stat ${req.Path}`);
        try {
          return { stat: await statRefFile(ref, req.Path, this.#o.mountBase) };
        } catch (e) {
          throw fileError(e, `stat ${req.Path}`);
        }
      },

      resolveImageConfig: async (req) => {
        const p = req.Platform;
        const platform = p?.OS ? `${p.OS}/${p.Architecture}${p.Variant ? `/${p.Variant}` : ""}` : undefined;
        try {
          const r = await bridge.resolveImageConfig(req.Ref, { platform });
          return {
            Digest: r.digest,
            Config: new TextEncoder().encode(JSON.stringify(r.config)),
            Ref: req.Ref,
          };
        } catch (e) {
          throw new ConnectError(
            `resolving image config of ${req.Ref}: ${(e as Error).message}`,
            Code.Unknown,
          );
        }
      },

      inputs: async () => ({
        Definitions: Object.fromEntries(
          Object.entries(bridge.inputs).map(([k, v]) => [k, fromBinary(DefinitionSchema, v)]),
        ),
      }),

      warn: async (req) => {
        const text = (b: Uint8Array) => new TextDecoder().decode(b);
        bridge.progress({
          warnings: [
            {
              vertex: req.digest,
              level: Number(req.level),
              short: text(req.short),
              detail: req.detail.map(text),
              url: req.url || undefined,
              source: req.info
                ? {
                    filename: req.info.filename,
                    ranges: req.ranges.map((r) => ({ start: r.start?.line ?? 0, end: r.end?.line ?? 0 })),
                  }
                : undefined,
            },
          ],
        });
        return {};
      },

      return: async (req) => {
        if (this.#outcome) {
          throw new ConnectError(`${this.#o.label}: Return was called twice`, Code.FailedPrecondition);
        }
        let outcome: ReturnOutcome;
        if (req.error && req.error.code !== 0) {
          outcome = {
            ok: false,
            error: new Error(req.error.message || `${this.#o.label} failed (code ${req.error.code})`),
          };
        } else {
          try {
            outcome = { ok: true, result: this.#fromPbResult(req.result) };
          } catch (e) {
            outcome = { ok: false, error: e as Error };
          }
        }
        this.#outcome = outcome;
        this.#settle(outcome);
        if (!outcome.ok && !(req.error && req.error.code !== 0)) {
          throw new ConnectError(outcome.error.message, Code.InvalidArgument);
        }
        return {};
      },
    };
  }
}

function definitionsToBytes(defs: Record<string, Definition>): Record<string, Uint8Array> {
  return Object.fromEntries(Object.entries(defs).map(([k, d]) => [k, toBinary(DefinitionSchema, d)]));
}

/** A failed solve as the frontend sees it; the failing step travels in metadata. */
function solveFailure(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof LLBError) return new ConnectError(e.message, Code.InvalidArgument);
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof SolveError) {
    const metadata = new Headers({
      [HEADER_VERTEX_DIGEST]: e.vertex.digest,
      [HEADER_VERTEX_NAME]: encodeURIComponent(e.vertex.name),
    });
    return new ConnectError(message, Code.Unknown, metadata);
  }
  if (e instanceof Error && e.name === "AbortError") return new ConnectError(message, Code.Canceled);
  return new ConnectError(message, Code.Unknown);
}

function fileError(e: unknown, what: string): ConnectError {
  if (e instanceof ConnectError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err.code === "ENOENT") return new ConnectError(`${what}: no such file or directory`, Code.NotFound);
  if (err.code === "ENOTDIR") return new ConnectError(`${what}: not a directory`, Code.InvalidArgument);
  return new ConnectError(`${what}: ${err.message}`, Code.Unknown);
}
