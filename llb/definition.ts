// Loading a Definition: decode every op, check the graph is whole and acyclic, and order it so
// that each op comes after its inputs. Every consumer of LLB (dump-llb, the solver) starts here,
// so malformed input is rejected once, with one clear message.
import { fromBinary } from "@bufbuild/protobuf";
import {
  type Definition,
  DefinitionSchema,
  type Op,
  type OpMetadata,
  OpSchema,
} from "../proto/gen/pb/ops_pb.ts";
import { type Digest, digestOf, isDigest } from "../util/digest.ts";

/** Why a definition was refused; the message is one line meant for a user. */
export class LLBError extends Error {
  override name = "LLBError";
}

/** One decoded op with the bytes its digest was computed from. */
export interface LoadedOp {
  digest: Digest;
  op: Op;
  bytes: Uint8Array;
  metadata?: OpMetadata;
}

/** A validated graph. `order` lists every op, each after its inputs. */
export interface LoadedDefinition {
  definition: Definition;
  ops: Map<Digest, LoadedOp>;
  order: Digest[];
  /** The terminal op (the last one in `def`): an op with a single input and no body. */
  terminal: Digest;
  /** What the definition builds: the terminal's input, or undefined for an empty result. */
  result?: { digest: Digest; index: number };
}

// Definitions come from clients; bound them so a hostile one cannot exhaust memory or stack.
const MAX_OPS = 1_000_000;

/** Decodes and validates Definition bytes (or an already decoded Definition). */
export function loadDefinition(input: Uint8Array | Definition): LoadedDefinition {
  let definition: Definition;
  if (input instanceof Uint8Array) {
    if (input.length === 0) throw new LLBError("invalid LLB definition: empty input");
    try {
      definition = fromBinary(DefinitionSchema, input);
    } catch (e) {
      throw new LLBError(`invalid LLB definition: not a protobuf pb.Definition (${(e as Error).message})`);
    }
  } else {
    definition = input;
  }
  if (definition.def.length === 0) throw new LLBError("invalid LLB definition: it contains no ops");
  if (definition.def.length > MAX_OPS) {
    throw new LLBError(
      `invalid LLB definition: ${definition.def.length} ops is more than the limit ${MAX_OPS}`,
    );
  }

  const ops = new Map<Digest, LoadedOp>();
  let last: Digest | undefined;
  for (const [i, bytes] of definition.def.entries()) {
    let op: Op;
    try {
      op = fromBinary(OpSchema, bytes);
    } catch (e) {
      throw new LLBError(`invalid LLB definition: op ${i} is not a protobuf pb.Op (${(e as Error).message})`);
    }
    const digest = digestOf(bytes);
    ops.set(digest, { digest, op, bytes, metadata: definition.metadata[digest] });
    last = digest;
  }
  const terminal = last!;

  for (const { digest, op } of ops.values()) {
    for (const [i, input] of op.inputs.entries()) {
      if (!isDigest(input.digest)) {
        throw new LLBError(
          `invalid LLB definition: op ${digest} input ${i} has a malformed digest ${JSON.stringify(input.digest)}`,
        );
      }
      if (!ops.has(input.digest)) {
        throw new LLBError(
          `invalid LLB definition: op ${digest} input ${i} names ${input.digest}, which is not in the definition`,
        );
      }
      if (input.index < 0n) {
        throw new LLBError(
          `invalid LLB definition: op ${digest} input ${i} has a negative output index ${input.index}`,
        );
      }
    }
  }

  const order = dependencyOrder(definition, ops, terminal);
  const term = ops.get(terminal)!;
  let result: LoadedDefinition["result"];
  if (term.op.op.case === undefined) {
    if (term.op.inputs.length > 1) {
      throw new LLBError(
        `invalid LLB definition: the terminal op ${terminal} has ${term.op.inputs.length} inputs, want at most 1`,
      );
    }
    const input = term.op.inputs[0];
    if (input) result = { digest: input.digest as Digest, index: Number(input.index) };
  } else {
    // A definition without the conventional terminal op: its last op is the result.
    result = { digest: terminal, index: 0 };
  }
  return { definition, ops, order, terminal, result };
}

/**
 * The definition's own order when it already lists inputs before their users (BuildKit's
 * client writes it so, and its dump-llb prints it as is); otherwise a computed one.
 */
function dependencyOrder(definition: Definition, ops: Map<Digest, LoadedOp>, terminal: Digest): Digest[] {
  const seen = new Set<Digest>();
  let inOrder = true;
  for (const bytes of definition.def) {
    const digest = digestOf(bytes);
    if (seen.has(digest)) continue;
    if (!ops.get(digest)!.op.inputs.every((i) => seen.has(i.digest as Digest))) inOrder = false;
    seen.add(digest);
  }
  const walked = topologicalOrder(ops, terminal);
  if (inOrder) return [...seen];
  const reached = new Set(walked);
  for (const digest of ops.keys()) {
    if (!reached.has(digest)) {
      for (const d of topologicalOrder(ops, digest)) {
        if (!reached.has(d)) {
          reached.add(d);
          walked.push(d);
        }
      }
    }
  }
  return walked;
}

/**
 * Post-order walk from the terminal op, inputs in declaration order: the order BuildKit's
 * `dump-llb` prints, and an order in which every op follows its inputs. Iterative, so a deep
 * chain cannot overflow the stack; a cycle is an error naming one op on it.
 */
export function topologicalOrder(ops: Map<Digest, LoadedOp>, terminal: Digest): Digest[] {
  const order: Digest[] = [];
  const state = new Map<Digest, "visiting" | "done">();
  const stack: { digest: Digest; next: number }[] = [{ digest: terminal, next: 0 }];
  state.set(terminal, "visiting");
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const inputs = ops.get(top.digest)!.op.inputs;
    if (top.next < inputs.length) {
      const child = inputs[top.next++]!.digest as Digest;
      const s = state.get(child);
      if (s === "visiting")
        throw new LLBError(`invalid LLB definition: the graph has a cycle through op ${child}`);
      if (s === undefined) {
        state.set(child, "visiting");
        stack.push({ digest: child, next: 0 });
      }
      continue;
    }
    stack.pop();
    state.set(top.digest, "done");
    order.push(top.digest);
  }
  return order;
}

/** Short human name for an op's kind, for messages and progress. */
export function opKind(op: Op): string {
  return op.op.case ?? "terminal";
}
