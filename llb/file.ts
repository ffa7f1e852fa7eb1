// File ops: a chain of mkdir/mkfile/rm/copy/symlink actions applied in one op. Each action
// works on the result of the one before (the first on the state it is applied to); copies
// read from other states, which become the op's inputs.
import type { ChownOpt, FileAction as PbFileAction, Op, UserOpt } from "../proto/gen/pb/ops_pb.ts";
import { opBuilders, type State } from "./state.ts";
import { type MarshalContext, type OpOptions, type Output, Vertex } from "./vertex.ts";
import path from "node:path/posix";

/** An owner by id or by name (names are resolved in the target's /etc/passwd and /etc/group). */
export type Owner = { user?: number | string; group?: number | string };

/** A time for created files: a Date, or nanoseconds since the epoch. */
export type Timestamp = Date | bigint;

export interface MkdirOptions {
  makeParents?: boolean;
  owner?: Owner;
  timestamp?: Timestamp;
}
export interface MkfileOptions {
  owner?: Owner;
  timestamp?: Timestamp;
}
export interface RmOptions {
  allowNotFound?: boolean;
  allowWildcard?: boolean;
}
export interface CopyOptions {
  owner?: Owner;
  /** Mode bits for copied files, or a symbolic chmod ("u+x,g-w"). */
  mode?: number | string;
  followSymlink?: boolean;
  /** Copy a directory's contents rather than the directory itself. */
  dirCopyContents?: boolean;
  /** Unpack a local tar archive source into dest (Dockerfile ADD). */
  attemptUnpack?: boolean;
  createDestPath?: boolean;
  allowWildcard?: boolean;
  allowEmptyWildcard?: boolean;
  timestamp?: Timestamp;
  include?: string[];
  exclude?: string[];
  alwaysReplaceExistingDestPaths?: boolean;
}
export interface SymlinkOptions {
  owner?: Owner;
  timestamp?: Timestamp;
}

type ActionSpec =
  | { kind: "mkdir"; path: string; mode: number; opts: MkdirOptions }
  | { kind: "mkfile"; path: string; mode: number; data: Uint8Array; opts: MkfileOptions }
  | { kind: "rm"; path: string; opts: RmOptions }
  | { kind: "copy"; from: State; src: string; dest: string; opts: CopyOptions }
  | { kind: "symlink"; oldpath: string; newpath: string; opts: SymlinkOptions };

/** An immutable chain of file actions; each method returns a longer chain. */
export class FileAction {
  readonly prev: FileAction | undefined;
  readonly spec: ActionSpec;

  constructor(spec: ActionSpec, prev?: FileAction) {
    this.spec = spec;
    this.prev = prev;
  }

  mkdir(p: string, mode = 0o755, opts: MkdirOptions = {}): FileAction {
    return new FileAction({ kind: "mkdir", path: p, mode, opts }, this);
  }
  mkfile(p: string, mode: number, data: Uint8Array | string, opts: MkfileOptions = {}): FileAction {
    return new FileAction({ kind: "mkfile", path: p, mode, data: bytesOf(data), opts }, this);
  }
  rm(p: string, opts: RmOptions = {}): FileAction {
    return new FileAction({ kind: "rm", path: p, opts }, this);
  }
  copy(from: State, src: string, dest: string, opts: CopyOptions = {}): FileAction {
    return new FileAction({ kind: "copy", from, src, dest, opts }, this);
  }
  symlink(oldpath: string, newpath: string, opts: SymlinkOptions = {}): FileAction {
    return new FileAction({ kind: "symlink", oldpath, newpath, opts }, this);
  }

  /** The chain from the first action to this one. */
  list(): ActionSpec[] {
    const out: ActionSpec[] = [];
    for (let a: FileAction | undefined = this; a; a = a.prev) out.push(a.spec);
    return out.reverse();
  }
}

export function mkdir(p: string, mode = 0o755, opts: MkdirOptions = {}): FileAction {
  return new FileAction({ kind: "mkdir", path: p, mode, opts });
}
export function mkfile(
  p: string,
  mode: number,
  data: Uint8Array | string,
  opts: MkfileOptions = {},
): FileAction {
  return new FileAction({ kind: "mkfile", path: p, mode, data: bytesOf(data), opts });
}
export function rm(p: string, opts: RmOptions = {}): FileAction {
  return new FileAction({ kind: "rm", path: p, opts });
}
export function copy(from: State, src: string, dest: string, opts: CopyOptions = {}): FileAction {
  return new FileAction({ kind: "copy", from, src, dest, opts });
}
export function symlink(oldpath: string, newpath: string, opts: SymlinkOptions = {}): FileAction {
  return new FileAction({ kind: "symlink", oldpath, newpath, opts });
}

class FileVertex extends Vertex {
  readonly inputs: Output[] = [];
  private readonly actions: PbFileAction[];

  constructor(base: State, chain: FileAction, opts: OpOptions) {
    super({ ...opts, platform: opts.platform ?? base.getPlatform() });
    const specs = chain.list();
    const cwd = base.getDir();
    const inputIndex = (o: Output | undefined): number => {
      if (!o) return -1;
      const found = this.inputs.findIndex((i) => i.vertex === o.vertex && i.index === o.index);
      if (found >= 0) return found;
      this.inputs.push(o);
      return this.inputs.length - 1;
    };
    // Inputs first (their count numbers the intermediate results), then the actions.
    const firstInput = inputIndex(base.output);
    const secondary = specs.map((s) => (s.kind === "copy" ? inputIndex(s.from.output) : -1));
    const n = this.inputs.length;
    this.actions = specs.map((s, i) => ({
      $typeName: "pb.FileAction",
      input: BigInt(i === 0 ? firstInput : n + i - 1),
      secondaryInput: BigInt(secondary[i]!),
      output: BigInt(i === specs.length - 1 ? 0 : -1),
      action: pbAction(s, cwd, BigInt(firstInput)),
    }));
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: { op: { case: "file", value: { $typeName: "pb.FileOp", actions: this.actions } } },
      caps: ["file.base"],
      withPlatform: true,
    };
  }
}

/** `base` is the input the chain is applied to: names in --chown resolve in its /etc/passwd. */
function pbAction(s: ActionSpec, cwd: string, base: bigint): PbFileAction["action"] {
  const abs = (p: string) => path.resolve(cwd, p) + (p.endsWith("/") && p !== "/" ? "/" : "");
  switch (s.kind) {
    case "mkdir":
      return {
        case: "mkdir",
        value: {
          $typeName: "pb.FileActionMkDir",
          path: abs(s.path),
          mode: s.mode,
          makeParents: s.opts.makeParents ?? false,
          owner: chown(s.opts.owner, base),
          timestamp: nanos(s.opts.timestamp),
        },
      };
    case "mkfile":
      return {
        case: "mkfile",
        value: {
          $typeName: "pb.FileActionMkFile",
          path: abs(s.path),
          mode: s.mode,
          data: s.data,
          owner: chown(s.opts.owner, base),
          timestamp: nanos(s.opts.timestamp),
        },
      };
    case "rm":
      return {
        case: "rm",
        value: {
          $typeName: "pb.FileActionRm",
          path: abs(s.path),
          allowNotFound: s.opts.allowNotFound ?? false,
          allowWildcard: s.opts.allowWildcard ?? false,
        },
      };
    case "copy": {
      const o = s.opts;
      return {
        case: "copy",
        value: {
          $typeName: "pb.FileActionCopy",
          src: path.resolve(s.from.getDir(), s.src),
          dest: abs(s.dest),
          owner: chown(o.owner, base),
          mode: typeof o.mode === "number" ? o.mode : -1,
          modeStr: typeof o.mode === "string" ? o.mode : "",
          followSymlink: o.followSymlink ?? false,
          dirCopyContents: o.dirCopyContents ?? false,
          attemptUnpackDockerCompatibility: o.attemptUnpack ?? false,
          createDestPath: o.createDestPath ?? false,
          allowWildcard: o.allowWildcard ?? false,
          allowEmptyWildcard: o.allowEmptyWildcard ?? false,
          timestamp: nanos(o.timestamp),
          includePatterns: o.include ?? [],
          excludePatterns: o.exclude ?? [],
          alwaysReplaceExistingDestPaths: o.alwaysReplaceExistingDestPaths ?? false,
        },
      };
    }
    case "symlink":
      return {
        case: "symlink",
        value: {
          $typeName: "pb.FileActionSymlink",
          oldpath: s.oldpath,
          newpath: abs(s.newpath),
          owner: chown(s.opts.owner, base),
          timestamp: nanos(s.opts.timestamp),
        },
      };
  }
}

function chown(o: Owner | undefined, base: bigint): ChownOpt | undefined {
  if (!o || (o.user === undefined && o.group === undefined)) return undefined;
  return { $typeName: "pb.ChownOpt", user: userOpt(o.user, base), group: userOpt(o.group, base) };
}

function userOpt(u: number | string | undefined, base: bigint): UserOpt | undefined {
  if (u === undefined) return undefined;
  if (typeof u === "number") return { $typeName: "pb.UserOpt", user: { case: "byID", value: u } };
  return {
    $typeName: "pb.UserOpt",
    user: { case: "byName", value: { $typeName: "pb.NamedUserOpt", name: u, input: base } },
  };
}

function nanos(t: Timestamp | undefined): bigint {
  if (t === undefined) return -1n;
  return typeof t === "bigint" ? t : BigInt(t.getTime()) * 1_000_000n;
}

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

/** Applies a chain of file actions to `base`. */
export function file(base: State, chain: FileAction, opts: OpOptions = {}): State {
  return base.withOutput({ vertex: new FileVertex(base, chain, opts), index: 0 });
}

opBuilders.file = file;
