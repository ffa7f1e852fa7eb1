// Applying the actions of one FileOp in order. Where each result lives (a fresh snapshot over its
// base, or the base itself reused in place) is the caller's decision, made in `prepareTarget`.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChownOpt, FileAction, UserOpt } from "../../proto/gen/pb/ops_pb.ts";
import { applyCopy, applyMkdir, applyMkfile, applyRm, applySymlink } from "./actions.ts";
import { resolveOwner } from "./owner.ts";

/** What an action starts from: nothing, an op input, or the result of an earlier action. */
export type FileActionBase =
  | { kind: "scratch" }
  | { kind: "input"; index: number; dir: string }
  /**
   * `exclusive`: no later action reads this result and it is not an op output, so the caller may
   * let this action modify it in place instead of copying it.
   */
  | { kind: "action"; index: number; dir: string; exclusive: boolean };

/** The caller's side of {@link applyFileActions}: where inputs are and where results go. */
export interface FileActionsHost {
  /** How many inputs the op has; an index at or above it names an earlier action's result. */
  numInputs: number;
  /** The mounted directory of op input `index`; only read. */
  inputDir(index: number): string | Promise<string>;
  /** A writable directory with `base`'s content, for action `actionIndex` to modify. */
  prepareTarget(actionIndex: number, base: FileActionBase): string | Promise<string>;
  signal?: AbortSignal;
}

/** Where the results of {@link applyFileActions} are. */
export interface FileActionsResult {
  /** The directory holding each action's result, by action index. */
  results: string[];
  /** The result directory of each op output, by output index. */
  outputs: Map<number, string>;
}

function index(v: bigint, what: string): number {
  if (v < -1n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what} ${v} is out of range`);
  return Number(v);
}

function chownOf(a: FileAction): ChownOpt | undefined {
  switch (a.action.case) {
    case "copy":
    case "mkfile":
    case "mkdir":
    case "symlink":
      return a.action.value.owner;
    default:
      return undefined;
  }
}

/** The inputs an action reads: its base, a copy's source, and the roots of owner names. */
function reads(a: FileAction): { base: number; others: number[] } {
  const others: number[] = [];
  if (a.action.case === "copy") others.push(index(a.secondaryInput, "secondaryInput"));
  const chown = chownOf(a);
  for (const u of [chown?.user, chown?.group]) {
    if (u?.user.case === "byName") others.push(index(u.user.value.input, "owner name input"));
  }
  return { base: index(a.input, "input"), others };
}

/**
 * Applies a FileOp's actions in order. Each action's `input` names its base: an op input (below
 * `numInputs`), an earlier action's result (index - numInputs), or -1 for scratch; a copy's
 * `secondaryInput` names its source the same way, and owner names are looked up in the input their
 * NamedUserOpt names (-1: the action's own target, before it changes). Returns every result and the
 * op outputs (`action.output`).
 */
export async function applyFileActions(
  actions: readonly FileAction[],
  host: FileActionsHost,
): Promise<FileActionsResult> {
  const { numInputs } = host;
  const plan = actions.map((a, i) => {
    const r = reads(a);
    for (const ref of [r.base, ...r.others]) {
      if (ref !== -1 && ref >= numInputs + i) {
        throw new Error(
          `file action ${i} refers to input ${ref}, which is neither an op input nor an earlier action`,
        );
      }
    }
    return r;
  });
  // How many later actions read each action's result; an exclusive base is read by its user alone.
  const readers = new Array<number>(actions.length).fill(0);
  for (const r of plan)
    for (const ref of [r.base, ...r.others]) if (ref >= numInputs) readers[ref - numInputs]!++;

  const results: string[] = [];
  const outputs = new Map<number, string>();
  let scratch: string | undefined;
  const dirOf = async (ref: number): Promise<string> => {
    if (ref === -1) {
      scratch ??= await mkdtemp(join(tmpdir(), "buildd-fileop-scratch-"));
      return scratch;
    }
    if (ref < numInputs) return host.inputDir(ref);
    return results[ref - numInputs]!;
  };
  try {
    for (let i = 0; i < actions.length; i++) {
      host.signal?.throwIfAborted();
      const a = actions[i]!;
      const { base } = plan[i]!;
      let baseSpec: FileActionBase;
      if (base === -1) baseSpec = { kind: "scratch" };
      else if (base < numInputs) baseSpec = { kind: "input", index: base, dir: await host.inputDir(base) };
      else {
        const j = base - numInputs;
        const exclusive = readers[j] === 1 && index(actions[j]!.output, "output") < 0;
        baseSpec = { kind: "action", index: j, dir: results[j]!, exclusive };
      }
      const target = await host.prepareTarget(i, baseSpec);
      const chown = chownOf(a);
      // A name is looked up in the input its NamedUserOpt names; -1 is this action's own target.
      const ownerRoot = async (u: UserOpt | undefined): Promise<string | undefined> => {
        if (u?.user.case !== "byName") return undefined;
        const ref = index(u.user.value.input, "owner name input");
        return ref === -1 ? target : dirOf(ref);
      };
      const owner = await resolveOwner(chown, {
        user: await ownerRoot(chown?.user),
        group: await ownerRoot(chown?.group),
      });
      switch (a.action.case) {
        case "mkdir":
          await applyMkdir(target, a.action.value, owner);
          break;
        case "mkfile":
          await applyMkfile(target, a.action.value, owner);
          break;
        case "rm":
          await applyRm(target, a.action.value);
          break;
        case "symlink":
          await applySymlink(target, a.action.value, owner);
          break;
        case "copy": {
          const src = await dirOf(index(a.secondaryInput, "secondaryInput"));
          await applyCopy(src, target, a.action.value, owner);
          break;
        }
        default:
          throw new Error(`file action ${i} has no action (an unknown kind from a newer client?)`);
      }
      results.push(target);
      const out = index(a.output, "output");
      if (out >= 0) {
        if (outputs.has(out)) throw new Error(`file actions ${i} and another both produce output ${out}`);
        outputs.set(out, target);
      }
    }
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
  return { results, outputs };
}
