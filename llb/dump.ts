// Human and tool readable views of a definition: one JSON object per op (what
// `buildctl debug dump-llb` prints, in the shape of BuildKit's), and a Graphviz graph.
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Op, OpMetadataSchema, OpSchema } from "../proto/gen/pb/ops_pb.ts";
import type { LoadedDefinition } from "./definition.ts";

export interface DumpOptions {
  /** Enums as numbers (BuildKit's dump does this) instead of names. */
  enumAsInteger?: boolean;
}

/** One entry per reachable op, inputs first: `{Op, Digest, OpMetadata}` in protobuf's JSON mapping. */
export function dumpJson(def: LoadedDefinition, opts: DumpOptions = {}): JsonValue[] {
  const jsonOpts = { useProtoFieldName: true, enumAsInteger: opts.enumAsInteger ?? false };
  return def.order.map((digest) => {
    const { op, metadata } = def.ops.get(digest)!;
    const entry: { [k: string]: JsonValue } = { Op: toJson(OpSchema, op, jsonOpts), Digest: digest };
    if (metadata) entry.OpMetadata = toJson(OpMetadataSchema, metadata, jsonOpts);
    return entry;
  });
}

/** A Graphviz digraph: one node per op labelled with what it does, edges from inputs. */
export function dumpDot(def: LoadedDefinition): string {
  const lines = ["digraph {", "  node [shape=box fontname=monospace];"];
  for (const digest of def.order) {
    const { op, metadata } = def.ops.get(digest)!;
    const name = metadata?.description["llb.customname"];
    const label = `${describeOp(op)}${name ? `\n${name}` : ""}\n${digest.slice(0, 19)}`;
    lines.push(`  ${dotId(digest)} [label=${JSON.stringify(label)}];`);
    for (const [i, input] of op.inputs.entries()) {
      const edge = input.index === 0n ? "" : ` [label="out ${input.index}"]`;
      lines.push(`  ${dotId(input.digest)} -> ${dotId(digest)}${edge}; // input ${i}`);
    }
  }
  lines.push("}");
  return `${lines.join("\n")}\n`;
}

function dotId(digest: string): string {
  return JSON.stringify(digest);
}

/** A one-line summary of an op, like "exec sh -c make" or "source docker-image://...". */
export function describeOp(op: Op): string {
  switch (op.op.case) {
    case "source":
      return `source ${op.op.value.identifier}`;
    case "exec":
      return `exec ${op.op.value.meta?.args.join(" ") ?? ""}`;
    case "file": {
      const kinds = op.op.value.actions.map((a) => {
        switch (a.action.case) {
          case "copy":
            return `copy ${a.action.value.src} ${a.action.value.dest}`;
          case "mkdir":
          case "mkfile":
          case "rm":
            return `${a.action.case} ${a.action.value.path}`;
          case "symlink":
            return `symlink ${a.action.value.oldpath} ${a.action.value.newpath}`;
          default:
            return "unknown";
        }
      });
      return `file ${kinds.join("; ")}`;
    }
    case "merge":
      return `merge of ${op.op.value.inputs.length} inputs`;
    case "diff":
      return "diff";
    case "build":
      return "build";
    default:
      return "result";
  }
}
