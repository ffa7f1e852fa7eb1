// Exec ops: run a process on a state's filesystem with extra mounts. The mount table, input and
// output numbering follow BuildKit's client: mounts sorted by destination (so "/" is first),
// secrets and ssh sockets after them, inputs numbered in order of first use.
import { create } from "@bufbuild/protobuf";
import {
  CacheSharingOpt,
  type Mount,
  MountSchema,
  MountType,
  NetMode,
  type Op,
  SecurityMode,
} from "../proto/gen/pb/ops_pb.ts";
import { type NetworkMode, opBuilders, type SecurityMode as SecMode, State } from "./state.ts";
import { type MarshalContext, type OpOptions, type Output, Vertex } from "./vertex.ts";

export type MountSpec =
  | {
      type?: "bind";
      dest: string;
      from?: State;
      selector?: string;
      readonly?: boolean;
      /** Writable during the run, but its changes are discarded (no output). */
      noOutput?: boolean;
    }
  | {
      type: "cache";
      dest: string;
      id: string;
      sharing?: "shared" | "private" | "locked";
      from?: State;
      selector?: string;
      readonly?: boolean;
    }
  | { type: "tmpfs"; dest: string; size?: number }
  | {
      type: "secret";
      dest: string;
      id: string;
      uid?: number;
      gid?: number;
      mode?: number;
      optional?: boolean;
    }
  | {
      type: "ssh";
      dest?: string;
      id?: string;
      uid?: number;
      gid?: number;
      mode?: number;
      optional?: boolean;
    };

export interface RunOptions extends OpOptions {
  /** The command as an argv. */
  args?: string[];
  /** A command line split like a POSIX shell would (no expansion). */
  shlex?: string;
  /** A script for `/bin/sh -c`. */
  shell?: string;
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  hostname?: string;
  extraHosts?: { host: string; ip: string }[];
  network?: NetworkMode;
  security?: SecMode;
  mounts?: MountSpec[];
  readonlyRootfs?: boolean;
  /** Secrets exposed as environment variables. */
  secretEnv?: { id: string; name: string; optional?: boolean }[];
  proxyEnv?: {
    httpProxy?: string;
    httpsProxy?: string;
    ftpProxy?: string;
    noProxy?: string;
    allProxy?: string;
  };
  validExitCodes?: number[];
}

interface PlannedMount {
  mount: Mount;
  source?: Output;
  noOutput?: boolean;
}

class ExecVertex extends Vertex {
  readonly inputs: Output[] = [];
  readonly outputs = new Map<string, number>();
  private readonly mounts: Mount[];
  private readonly body: Omit<Op["op"] & { case: "exec" }, "case">["value"];
  private readonly caps: string[];

  constructor(base: State, opts: RunOptions) {
    super({ ...opts, platform: opts.platform ?? base.getPlatform() });
    let ctx = base;
    for (const [k, v] of Object.entries(opts.env ?? {})) ctx = ctx.addEnv(k, v);
    const args =
      opts.args ??
      (opts.shlex !== undefined
        ? shlex(opts.shlex)
        : opts.shell !== undefined
          ? ["/bin/sh", "-c", opts.shell]
          : []);
    if (args.length === 0) throw new Error("run needs a command: give args, shlex or shell");

    const caps = new Set(["exec.meta.base", "exec.mount.bind"]);
    const planned: PlannedMount[] = [
      {
        mount: create(MountSchema, {
          input: 0n,
          dest: "/",
          output: 0n,
          readonly: opts.readonlyRootfs ?? false,
        }),
        source: base.output,
      },
    ];
    const special: Mount[] = [];
    let env = ctx.envList();
    for (const m of opts.mounts ?? []) {
      switch (m.type) {
        case undefined:
        case "bind":
          if (m.selector) caps.add("exec.mount.selector");
          if (m.noOutput && !m.readonly) caps.add("exec.mount.bind.readwrite-nooutput");
          planned.push({
            mount: create(MountSchema, {
              dest: m.dest,
              selector: m.selector ?? "",
              readonly: m.readonly ?? false,
            }),
            source: m.from?.output,
            noOutput: m.noOutput,
          });
          break;
        case "cache": {
          caps.add("exec.mount.cache");
          if (m.sharing && m.sharing !== "shared") caps.add("exec.mount.cache.sharing");
          const sharing = {
            shared: CacheSharingOpt.SHARED,
            private: CacheSharingOpt.PRIVATE,
            locked: CacheSharingOpt.LOCKED,
          }[m.sharing ?? "shared"];
          if (m.selector) caps.add("exec.mount.selector");
          planned.push({
            mount: create(MountSchema, {
              dest: m.dest,
              selector: m.selector ?? "",
              readonly: m.readonly ?? false,
              mountType: MountType.CACHE,
              cacheOpt: { ID: m.id, sharing },
            }),
            source: m.from?.output,
          });
          break;
        }
        case "tmpfs":
          caps.add("exec.mount.tmpfs");
          if (m.size) caps.add("exec.mount.tmpfs.size");
          planned.push({
            mount: create(MountSchema, {
              dest: m.dest,
              mountType: MountType.TMPFS,
              TmpfsOpt: { size: BigInt(m.size ?? 0) },
            }),
          });
          break;
        case "secret":
          caps.add("exec.mount.secret");
          special.push(
            create(MountSchema, {
              dest: m.dest,
              mountType: MountType.SECRET,
              secretOpt: {
                ID: m.id,
                uid: m.uid ?? 0,
                gid: m.gid ?? 0,
                mode: m.mode ?? 0o400,
                optional: m.optional ?? false,
              },
            }),
          );
          break;
        case "ssh": {
          caps.add("exec.mount.ssh");
          const dest = m.dest ?? "/run/buildkit/ssh_agent.0";
          if (!env.some((e) => e.startsWith("SSH_AUTH_SOCK="))) env = [...env, `SSH_AUTH_SOCK=${dest}`];
          special.push(
            create(MountSchema, {
              dest,
              mountType: MountType.SSH,
              SSHOpt: {
                ID: m.id ?? "default",
                uid: m.uid ?? 0,
                gid: m.gid ?? 0,
                mode: m.mode ?? 0o600,
                optional: m.optional ?? false,
              },
            }),
          );
          break;
        }
      }
    }
    const root = planned[0]!;
    const rest = planned
      .slice(1)
      .sort((a, b) => (a.mount.dest < b.mount.dest ? -1 : a.mount.dest > b.mount.dest ? 1 : 0));
    const ordered = [root, ...rest];

    // Inputs in order of first use; the same output mounted twice is one input.
    const inputKey = new Map<string, number>();
    const vertexIds = new Map<Vertex, number>();
    let nextOutput = 0;
    for (const p of ordered) {
      const isScratchOnly = p.mount.mountType === MountType.TMPFS;
      if (p.source) {
        const vid = vertexIds.get(p.source.vertex) ?? vertexIds.size;
        vertexIds.set(p.source.vertex, vid);
        const key = `${vid}:${p.source.index}`;
        let idx = inputKey.get(key);
        if (idx === undefined) {
          idx = this.inputs.length;
          inputKey.set(key, idx);
          this.inputs.push(p.source);
        }
        p.mount.input = BigInt(idx);
      } else {
        p.mount.input = -1n;
      }
      const writable =
        p.mount.mountType === MountType.BIND && !p.mount.readonly && !isScratchOnly && !p.noOutput;
      if (writable) {
        this.outputs.set(p.mount.dest, nextOutput);
        p.mount.output = BigInt(nextOutput++);
      } else {
        p.mount.output = -1n;
      }
    }
    this.mounts = [...ordered.map((p) => p.mount), ...special];

    let network: NetMode = NetMode.UNSET;
    const net = opts.network ?? ctx.context.network;
    if (net === "host") network = NetMode.HOST;
    if (net === "none") network = NetMode.NONE;
    if (network !== NetMode.UNSET) caps.add("exec.meta.network");
    const sec = opts.security ?? ctx.context.security;
    const security = sec === "insecure" ? SecurityMode.INSECURE : SecurityMode.SANDBOX;
    if (security !== SecurityMode.SANDBOX) caps.add("exec.meta.security");
    if (opts.proxyEnv) caps.add("exec.meta.proxy");
    if (opts.secretEnv?.length) caps.add("exec.secretenv");
    if (opts.validExitCodes?.length) caps.add("exec.validexitcode");

    this.caps = [...caps];
    this.body = {
      $typeName: "pb.ExecOp",
      meta: {
        $typeName: "pb.Meta",
        args,
        env,
        cwd: opts.cwd ?? ctx.context.cwd,
        user: opts.user ?? ctx.context.user,
        proxyEnv: opts.proxyEnv
          ? {
              $typeName: "pb.ProxyEnv",
              httpProxy: opts.proxyEnv.httpProxy ?? "",
              httpsProxy: opts.proxyEnv.httpsProxy ?? "",
              ftpProxy: opts.proxyEnv.ftpProxy ?? "",
              noProxy: opts.proxyEnv.noProxy ?? "",
              allProxy: opts.proxyEnv.allProxy ?? "",
            }
          : undefined,
        extraHosts: [...ctx.context.extraHosts, ...(opts.extraHosts ?? [])].map((h) => ({
          $typeName: "pb.HostIP" as const,
          Host: h.host,
          IP: h.ip,
        })),
        hostname: opts.hostname ?? ctx.context.hostname,
        ulimit: [],
        cgroupParent: "",
        removeMountStubsRecursive: true,
        validExitCodes: opts.validExitCodes ?? [],
      },
      mounts: this.mounts,
      network,
      security,
      secretenv: (opts.secretEnv ?? []).map((s) => ({
        $typeName: "pb.SecretEnv" as const,
        ID: s.id,
        name: s.name,
        optional: s.optional ?? false,
      })),
    };
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return { op: { op: { case: "exec", value: this.body } }, caps: this.caps, withPlatform: true };
  }
}

/** The state after a `run`: its root filesystem, plus access to the other writable mounts. */
export class ExecState extends State {
  private readonly exec: ExecVertex;

  constructor(exec: ExecVertex, base: State) {
    const rootIndex = exec.outputs.get("/");
    super(rootIndex === undefined ? base.output : { vertex: exec, index: rootIndex }, base.context);
    this.exec = exec;
  }

  /** The root filesystem after the command ran. */
  root(): State {
    return new State(this.output, this.context);
  }

  /** The contents of a writable mount after the command ran. */
  getMount(dest: string): State {
    const index = this.exec.outputs.get(dest);
    if (index === undefined) throw new Error(`run has no writable mount at ${dest}`);
    return new State({ vertex: this.exec, index }, this.context);
  }
}

/** Runs a command on `base`. */
export function run(base: State, opts: RunOptions): ExecState {
  return new ExecState(new ExecVertex(base, opts), base);
}

opBuilders.run = run;

/** Splits a command line into words like a POSIX shell, without any expansion. */
export function shlex(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(word);
  return words;
}
