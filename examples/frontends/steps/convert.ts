// A steps file to LLB: every step becomes a state (memoized, so a step used twice is built
// once), steps that do not depend on each other are independent branches the solver runs at
// the same time, and the target's state plus the file's `image` section give the image config.
import { copy, image, type PlatformSpec, type State, scratch } from "../../../llb/index.ts";
import { dependencies, type Step, type StepsFile } from "./format.ts";

/** The parts of an OCI image config the steps format reads and writes. */
export interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    Env?: string[];
    Cmd?: string[];
    Entrypoint?: string[];
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface ConvertContext {
  platform: PlatformSpec;
  /** The build context (the client's dir, or a frontend input). */
  context: State;
  /** The config and digest of an image, to pin it and take its env and workdir. */
  resolveImage(ref: string): Promise<{ digest: string; config: Partial<ImageConfig> }>;
  /** Builds a Dockerfile with the Dockerfile frontend: a nested build. */
  buildDockerfile(text: string, step: string): Promise<{ state: State; config?: Partial<ImageConfig> }>;
}

interface Built {
  state: State;
  /** The runtime config of the image the step started from, if any. */
  base: Partial<ImageConfig["config"]>;
}

/** Converts the build up to `target` (default: the file's). Steps the target does not need are not converted. */
export async function stepsToLLB(
  file: StepsFile,
  ctx: ConvertContext,
  target = file.target,
): Promise<{ state: State; image: ImageConfig }> {
  if (!file.steps.has(target)) {
    throw new Error(
      `target ${JSON.stringify(target)} is not a step (steps: ${[...file.steps.keys()].join(", ")})`,
    );
  }
  const memo = new Map<string, Promise<Built>>();
  const source = (name: string): Promise<Built> => {
    if (name === "scratch") return Promise.resolve({ state: scratch().platform(ctx.platform), base: {} });
    if (name === "context") return Promise.resolve({ state: ctx.context, base: {} });
    let p = memo.get(name);
    if (!p) {
      p = convertStep(name, file.steps.get(name)!, source, ctx);
      memo.set(name, p);
    }
    return p;
  };
  const built = await source(target);
  const s = built.state;
  const env = new Map(s.envList().map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
  for (const [k, v] of Object.entries(file.image.env)) env.set(k, v);
  const config: ImageConfig["config"] = {
    ...built.base,
    Env: [...env].map(([k, v]) => `${k}=${v}`),
    WorkingDir: file.image.workdir ?? s.getDir(),
  };
  if (file.image.cmd) config.Cmd = file.image.cmd;
  if (file.image.entrypoint) config.Entrypoint = file.image.entrypoint;
  if (file.image.user) config.User = file.image.user;
  const labels = { ...built.base.Labels, ...file.image.labels };
  if (Object.keys(labels).length > 0) config.Labels = labels;
  return {
    state: s,
    image: { architecture: ctx.platform.architecture, os: ctx.platform.os, config },
  };
}

async function convertStep(
  name: string,
  step: Step,
  source: (name: string) => Promise<Built>,
  ctx: ConvertContext,
): Promise<Built> {
  // Dependencies convert concurrently (image configs resolve in parallel).
  const deps = new Map(await Promise.all(dependencies(step).map(async (d) => [d, await source(d)] as const)));
  let built: Built;
  if (step.image !== undefined) {
    const r = await ctx.resolveImage(step.image);
    const cfg = r.config.config ?? {};
    let st = image(`${step.image.replace(/@.*$/, "")}@${r.digest}`, {
      platform: ctx.platform,
      customName: `[${name}] from ${step.image}`,
    });
    for (const e of cfg.Env ?? []) {
      const i = e.indexOf("=");
      if (i > 0) st = st.addEnv(e.slice(0, i), e.slice(i + 1));
    }
    if (cfg.WorkingDir) st = st.dir(cfg.WorkingDir);
    built = { state: st, base: cfg };
  } else if (step.dockerfile !== undefined) {
    const r = await ctx.buildDockerfile(step.dockerfile, name);
    let st = r.state;
    for (const e of r.config?.config?.Env ?? []) {
      const i = e.indexOf("=");
      if (i > 0) st = st.addEnv(e.slice(0, i), e.slice(i + 1));
    }
    if (r.config?.config?.WorkingDir) st = st.dir(r.config.config.WorkingDir);
    built = { state: st, base: r.config?.config ?? {} };
  } else {
    const from = step.from!;
    built = deps.get(from) ?? (await source(from));
  }
  let st = built.state;
  for (const [k, v] of Object.entries(step.env)) st = st.addEnv(k, v);
  if (step.workdir !== undefined) st = st.dir(step.workdir);
  for (const c of step.copy) {
    const from = deps.get(c.from) ?? (await source(c.from));
    st = st.file(
      copy(from.state, c.src, c.dest.startsWith("/") ? c.dest : `${st.getDir()}/${c.dest}`, {
        createDestPath: true,
        allowWildcard: true,
        dirCopyContents: true,
      }),
      { customName: `[${name}] copy ${c.src} from ${c.from} to ${c.dest}` },
    );
  }
  for (const cmd of step.run) {
    st = st.run({ shell: cmd, customName: `[${name}] ${cmd}` }).root();
  }
  return { state: st, base: built.base };
}
