// State: an immutable handle on one output of the graph plus the process context (env, working
// dir, user, platform, network...) that later `run` steps inherit. Every method returns a new
// State; nothing is ever mutated, so states can be shared and reused freely.
import path from "node:path/posix";
import type { ExecState, RunOptions } from "./exec.ts";
import type { FileAction } from "./file.ts";
import {
  hostPlatform,
  type Marshalled,
  marshalGraph,
  type OpOptions,
  type Output,
  type PlatformSpec,
} from "./vertex.ts";

/**
 * The op constructors behind `State.run` and `State.file`, installed by exec.ts and file.ts
 * (which extend or import State, so State cannot import them back without a cycle).
 */
export const opBuilders: {
  run?: (base: State, opts: RunOptions) => ExecState;
  file?: (base: State, action: FileAction, opts: OpOptions) => State;
} = {};

export type NetworkMode = "default" | "host" | "none";
export type SecurityMode = "sandbox" | "insecure";

/** The inherited process context of a state. */
export interface StateContext {
  env: readonly (readonly [string, string])[];
  cwd: string;
  user: string;
  platform?: PlatformSpec;
  hostname: string;
  network: NetworkMode;
  security: SecurityMode;
  extraHosts: readonly { host: string; ip: string }[];
}

const EMPTY_CONTEXT: StateContext = {
  env: [],
  cwd: "/",
  user: "",
  hostname: "",
  network: "default",
  security: "sandbox",
  extraHosts: [],
};

export class State {
  /** The graph output this state is; undefined for the empty filesystem (scratch). */
  readonly output: Output | undefined;
  readonly context: StateContext;

  constructor(output?: Output, context: StateContext = EMPTY_CONTEXT) {
    this.output = output;
    this.context = context;
  }

  /** The same filesystem with another context. */
  protected withContext(patch: Partial<StateContext>): State {
    return new State(this.output, { ...this.context, ...patch });
  }

  /** Another filesystem with this state's context. */
  withOutput(output: Output | undefined): State {
    return new State(output, this.context);
  }

  getEnv(key: string): string | undefined {
    return this.context.env.find(([k]) => k === key)?.[1];
  }

  /** Sets (or replaces) an environment variable; `$VAR` in the value is not expanded. */
  addEnv(key: string, value: string): State {
    if (key === "" || key.includes("="))
      throw new Error(`invalid environment variable name ${JSON.stringify(key)}`);
    return this.withContext({ env: [...this.context.env.filter(([k]) => k !== key), [key, value]] });
  }

  /** Removes an environment variable. */
  delEnv(key: string): State {
    return this.withContext({ env: this.context.env.filter(([k]) => k !== key) });
  }

  /** The env as "K=V" strings, in the order they were set. */
  envList(): string[] {
    return this.context.env.map(([k, v]) => `${k}=${v}`);
  }

  /** Working directory; a relative path is taken from the current one. */
  dir(dir: string): State {
    return this.withContext({ cwd: path.resolve(this.context.cwd, dir) });
  }

  getDir(): string {
    return this.context.cwd;
  }

  user(user: string): State {
    return this.withContext({ user });
  }

  hostname(hostname: string): State {
    return this.withContext({ hostname });
  }

  network(network: NetworkMode): State {
    return this.withContext({ network });
  }

  security(security: SecurityMode): State {
    return this.withContext({ security });
  }

  addExtraHost(host: string, ip: string): State {
    return this.withContext({ extraHosts: [...this.context.extraHosts, { host, ip }] });
  }

  /** The platform later ops of this state run for; unset means the marshal default. */
  platform(platform: PlatformSpec): State {
    return this.withContext({ platform });
  }

  getPlatform(): PlatformSpec | undefined {
    return this.context.platform;
  }

  /** Runs a command on this filesystem with this context. */
  run(opts: RunOptions): ExecState {
    if (!opBuilders.run) throw new Error("import the LLB library from llb/index.ts");
    return opBuilders.run(this, opts);
  }

  /** Applies a chain of file actions (mkdir, mkfile, rm, copy, symlink). */
  file(action: FileAction, opts: OpOptions = {}): State {
    if (!opBuilders.file) throw new Error("import the LLB library from llb/index.ts");
    return opBuilders.file(this, action, opts);
  }

  /** Writes the graph ending at this state as a Definition. */
  marshal(opts: { platform?: PlatformSpec } = {}): Marshalled {
    return marshalGraph(this.output, { platform: opts.platform ?? this.context.platform ?? hostPlatform() });
  }
}

/** The empty filesystem. */
export function scratch(): State {
  return new State();
}
