// Helpers for conversion tests: convert, marshal, and look at the ops by kind and name.
import type { Op, OpMetadata } from "../../../proto/gen/pb/ops_pb.ts";
import { loadDefinition } from "../../../llb/index.ts";
import { dockerfileToLLB } from "./convert.ts";
import type { ConvertInput, ConvertResult, ResolvedImage } from "./options.ts";

export const AMD64 = { os: "linux", architecture: "amd64" } as const;
export const ARM64 = { os: "linux", architecture: "arm64" } as const;

/** One op of a marshalled result. */
export interface TestOp {
  digest: string;
  op: Op;
  meta: OpMetadata | undefined;
  name: string | undefined;
}

/** A converted Dockerfile and its marshalled ops, inputs before users. */
export interface Converted extends ConvertResult {
  ops: TestOp[];
  byDigest: Map<string, TestOp>;
  /** The op named `name` (progress name), or a failure listing the names. */
  named(name: string | RegExp): TestOp;
  /** Digests of the inputs of `op`. */
  inputsOf(op: TestOp): TestOp[];
}

/** Converts with amd64 as build and target platform unless told otherwise. */
export async function convert(dockerfile: string, opts: Partial<ConvertInput> = {}): Promise<Converted> {
  const result = await dockerfileToLLB({
    dockerfile,
    targetPlatform: AMD64,
    buildPlatforms: [AMD64],
    ...opts,
  });
  const def = loadDefinition(result.state.marshal().bytes);
  const ops = def.order
    .filter((d) => d !== def.terminal)
    .map((digest) => {
      const { op, metadata } = def.ops.get(digest)!;
      return { digest, op, meta: metadata, name: metadata?.description["llb.customname"] };
    });
  const byDigest = new Map<string, TestOp>(ops.map((o) => [o.digest, o]));
  return {
    ...result,
    ops,
    byDigest,
    named(name) {
      const found = ops.filter((o) => (typeof name === "string" ? o.name === name : name.test(o.name ?? "")));
      if (found.length !== 1) {
        throw new Error(
          `want one op named ${name}, found ${found.length}: ${JSON.stringify(ops.map((o) => o.name))}`,
        );
      }
      return found[0]!;
    },
    inputsOf(op) {
      return op.op.inputs.map((i) => byDigest.get(i.digest)!);
    },
  };
}

/** The exec body of an op (throws when it is not an exec). */
export function execOf(op: TestOp) {
  if (op.op.op.case !== "exec") throw new Error(`op ${op.name} is a ${op.op.op.case}, not an exec`);
  return op.op.op.value;
}

/** The file actions of an op (throws when it is not a file op). */
export function fileOf(op: TestOp) {
  if (op.op.op.case !== "file") throw new Error(`op ${op.name} is a ${op.op.op.case}, not a file op`);
  return op.op.op.value.actions;
}

/** A resolver serving fixed configs, recording what it was asked. */
export function fakeRegistry(images: Record<string, { config: object; digest?: string }>) {
  const calls: { ref: string; platform: string; logName: string }[] = [];
  const resolve = async (
    ref: string,
    opts: { platform: { os: string; architecture: string }; logName: string },
  ): Promise<ResolvedImage> => {
    calls.push({ ref, platform: `${opts.platform.os}/${opts.platform.architecture}`, logName: opts.logName });
    const img = images[ref];
    if (!img) throw new Error(`${ref}: not found`);
    const digest = img.digest ?? `sha256:${"0".repeat(63)}${Object.keys(images).indexOf(ref)}`;
    return { digest, config: img.config };
  };
  return { resolve, calls };
}

/** An image config with some layers, for base images in tests. */
export function baseConfig(config: object = {}, platform: { os: string; architecture: string } = AMD64) {
  return {
    ...platform,
    config,
    rootfs: { type: "layers", diff_ids: [`sha256:${"a".repeat(64)}`] },
    history: [{ created_by: "base layer" }],
  };
}
