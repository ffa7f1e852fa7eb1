// The graph underneath State: vertices that know their inputs and how to marshal themselves,
// and the marshalling of a whole graph into a Definition. Marshalling is deterministic (sorted
// map keys, fixed field order), so the same graph gives the same bytes on every run and machine,
// and a vertex reached twice is written once.
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type Definition,
  DefinitionSchema,
  type Op,
  type OpMetadata,
  OpMetadataSchema,
  OpSchema,
  type Platform,
  PlatformSchema,
} from "../proto/gen/pb/ops_pb.ts";
import { type Digest, digestOf } from "../util/digest.ts";

/** One output of a vertex: what a State points at. */
export interface Output {
  readonly vertex: Vertex;
  readonly index: number;
}

/** What a vertex turns into once marshalled. */
export interface MarshalledVertex {
  digest: Digest;
  bytes: Uint8Array;
  metadata: OpMetadata;
}

/** Options every op accepts: they go to its metadata, not (except platform) into its digest. */
export interface OpOptions {
  /** The progress name ("llb.customname"). */
  customName?: string;
  /** Free-form description entries. */
  description?: Record<string, string>;
  ignoreCache?: boolean;
  progressGroup?: { id: string; name?: string; weak?: boolean };
  /** Platform of the op, for ops that carry one; defaults to the marshal platform. */
  platform?: PlatformSpec;
  /**
   * Worker filters the op must run on (containerd-style, ORed, e.g.
   * `labels."org.mobyproject.buildkit.worker.executor"==containerd`); part of its digest.
   */
  workerConstraints?: string[];
}

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

/** Marshal-time settings shared by the whole graph. */
export interface MarshalContext {
  /** Used for ops that carry a platform and were not given one. */
  platform: PlatformSpec;
}

/** A vertex builds its Op given the digests of its inputs, which are marshalled first. */
export abstract class Vertex {
  abstract readonly inputs: readonly Output[];
  protected readonly options: OpOptions;
  private readonly memo = new Map<string, MarshalledVertex>();

  constructor(options: OpOptions = {}) {
    this.options = options;
  }

  /** The op body and capabilities, given the marshal context. */
  protected abstract build(ctx: MarshalContext): {
    op: Pick<Op, "op">;
    caps: string[];
    withPlatform: boolean;
  };

  marshal(ctx: MarshalContext, inputDigests: readonly Digest[]): MarshalledVertex {
    const key = platformKey(ctx.platform);
    const cached = this.memo.get(key);
    if (cached) return cached;
    const { op: body, caps, withPlatform } = this.build(ctx);
    const op = create(OpSchema, {
      op: body.op,
      inputs: this.inputs.map((o, i) => ({ digest: inputDigests[i]!, index: BigInt(o.index) })),
      platform: withPlatform ? toPbPlatform(this.options.platform ?? ctx.platform) : undefined,
      constraints: { filter: this.options.workerConstraints ?? [] },
    });
    const bytes = toBinary(OpSchema, op);
    const result = { digest: digestOf(bytes), bytes, metadata: this.metadata(caps) };
    this.memo.set(key, result);
    return result;
  }

  private metadata(caps: string[]): OpMetadata {
    const o = this.options;
    const description: Record<string, string> = { ...o.description };
    if (o.customName !== undefined) description["llb.customname"] = o.customName;
    return create(OpMetadataSchema, {
      ignoreCache: o.ignoreCache ?? false,
      description: sortedRecord(description),
      caps: sortedRecord(Object.fromEntries(caps.map((c) => [c, true]))),
      progressGroup: o.progressGroup
        ? { id: o.progressGroup.id, name: o.progressGroup.name ?? "", weak: o.progressGroup.weak ?? false }
        : undefined,
    });
  }
}

/** The result of marshalling a graph. */
export interface Marshalled {
  definition: Definition;
  bytes: Uint8Array;
}

/**
 * Writes the graph that ends at `output` (undefined: the empty filesystem) as a Definition:
 * ops in dependency order, each once, then a terminal op pointing at the result.
 */
export function marshalGraph(output: Output | undefined, ctx: MarshalContext): Marshalled {
  const def: Uint8Array[] = [];
  const metadata: Record<string, OpMetadata> = {};
  const done = new Map<Vertex, Digest>();
  let anyDescription = false;
  let anyIgnoreCache = false;

  // Iterative post-order walk: deep chains (10,000 steps) must not overflow the stack.
  const visit = (root: Vertex): Digest => {
    const stack: { v: Vertex; next: number }[] = [{ v: root, next: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.v.inputs.length) {
        const child = top.v.inputs[top.next++]!.vertex;
        if (!done.has(child)) stack.push({ v: child, next: 0 });
        continue;
      }
      stack.pop();
      if (done.has(top.v)) continue;
      const m = top.v.marshal(
        ctx,
        top.v.inputs.map((i) => done.get(i.vertex)!),
      );
      done.set(top.v, m.digest);
      if (!(m.digest in metadata)) {
        def.push(m.bytes);
        metadata[m.digest] = m.metadata;
        if (Object.keys(m.metadata.description).length > 0) anyDescription = true;
        if (m.metadata.ignoreCache) anyIgnoreCache = true;
      }
    }
    return done.get(root)!;
  };

  const terminal = create(OpSchema, {});
  if (output) {
    terminal.inputs = [{ $typeName: "pb.Input", digest: visit(output.vertex), index: BigInt(output.index) }];
  }
  const terminalBytes = toBinary(OpSchema, terminal);
  const caps = ["constraints", "platform"];
  if (anyDescription) caps.push("meta.description");
  if (anyIgnoreCache) caps.push("meta.ignorecache");
  def.push(terminalBytes);
  metadata[digestOf(terminalBytes)] = create(OpMetadataSchema, {
    caps: sortedRecord(Object.fromEntries(caps.map((c) => [c, true]))),
  });

  const definition = create(DefinitionSchema, { def, metadata: sortedRecord(metadata) });
  return { definition, bytes: toBinary(DefinitionSchema, definition) };
}

/** Map fields are encoded in insertion order: sorting keys makes the bytes deterministic. */
export function sortedRecord<T>(r: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(r).sort()) out[k] = r[k]!;
  return out;
}

export function toPbPlatform(p: PlatformSpec): Platform {
  return create(PlatformSchema, { OS: p.os, Architecture: p.architecture, Variant: p.variant ?? "" });
}

function platformKey(p: PlatformSpec): string {
  return `${p.os}/${p.architecture}/${p.variant ?? ""}`;
}

/** The platform of the machine running this code, in OCI terms. */
export function hostPlatform(): PlatformSpec {
  const arch: Record<string, string> = {
    x64: "amd64",
    arm64: "arm64",
    arm: "arm",
    ia32: "386",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
  };
  return { os: "linux", architecture: arch[process.arch] ?? process.arch };
}

/** Parses "linux/arm64/v8" or "linux/amd64". */
export function parsePlatform(s: string): PlatformSpec {
  const [os, architecture, variant, ...rest] = s.split("/");
  if (!os || !architecture || rest.length > 0) {
    throw new Error(`invalid platform ${JSON.stringify(s)}: want os/arch[/variant], e.g. linux/amd64`);
  }
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** "linux/arm64/v8". */
export function formatPlatform(p: PlatformSpec): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}
