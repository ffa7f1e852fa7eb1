// The steps format: a JSON build file of named steps and the dependencies between them, a
// second frontend format to show that buildd's frontends are pluggable. Parsing checks every
// field and every reference up front; errors name the JSON path and say what is expected.
//
//   {
//     "args": { "GREETING": "hello" },
//     "steps": {
//       "base":  { "image": "busybox:latest" },
//       "build": { "from": "base", "workdir": "/src", "copy": [{ "from": "context", "src": ".", "dest": "." }],
//                  "run": ["make", "echo {{GREETING}} > /out/greeting"] },
//       "final": { "from": "scratch", "copy": [{ "from": "build", "src": "/out", "dest": "/" }] }
//     },
//     "target": "final",
//     "image": { "cmd": ["cat", "/greeting"] }
//   }

/** A file copied into a step from another step, "context" (the build context) or "scratch". */
export interface CopySpec {
  from: string;
  src: string;
  dest: string;
}

/** One step: where it starts, then copies, then commands, with env and workdir set first. */
export interface Step {
  /** Start from an image. */
  image?: string;
  /** Start from another step, "scratch" or "context". */
  from?: string;
  /** Build this Dockerfile (text) with the Dockerfile frontend: a nested build. */
  dockerfile?: string;
  env: Record<string, string>;
  workdir?: string;
  copy: CopySpec[];
  /** Shell commands, each its own layer. */
  run: string[];
}

/** What the built image says about itself. */
export interface ImageSpec {
  cmd?: string[];
  entrypoint?: string[];
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  labels: Record<string, string>;
}

export interface StepsFile {
  args: Record<string, string>;
  steps: Map<string, Step>;
  target: string;
  image: ImageSpec;
}

/** A mistake in the build file: the JSON path and what is wrong. */
export class StepsFileError extends Error {
  override name = "StepsFileError";
}

/** Names other steps refer to without defining them. */
export const BUILTIN_SOURCES = ["scratch", "context"] as const;
const NAME_RE = /^[a-z][a-z0-9._-]{0,62}$/;
const ARG_RE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

type Json = unknown;

function fail(path: string, why: string): never {
  throw new StepsFileError(`${path}: ${why}`);
}

function object(v: Json, path: string): Record<string, Json> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(path, "want an object");
  return v as Record<string, Json>;
}

function only(o: Record<string, Json>, path: string, keys: string[]): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) fail(`${path}.${k}`, `unknown field (known: ${keys.join(", ")})`);
  }
}

function str(v: Json, path: string): string {
  if (typeof v !== "string") fail(path, `want a string, got ${v === null ? "null" : typeof v}`);
  return v as string;
}

function strings(v: Json, path: string): string[] {
  if (typeof v === "string") return [v];
  if (!Array.isArray(v)) fail(path, "want a string or a list of strings");
  return (v as Json[]).map((e, i) => str(e, `${path}[${i}]`));
}

function stringMap(v: Json, path: string): Record<string, string> {
  const o = object(v, path);
  return Object.fromEntries(Object.entries(o).map(([k, e]) => [k, str(e, `${path}.${k}`)]));
}

/** Replaces `{{NAME}}` with the arg's value; an unknown name is an error (shell `$VARS` are left alone). */
function expand(s: string, args: Record<string, string>, path: string): string {
  return s.replace(ARG_RE, (_, name: string) => {
    const v = args[name];
    if (v === undefined)
      fail(path, `unknown arg {{${name}}} (args: ${Object.keys(args).join(", ") || "none"})`);
    return v;
  });
}

/** Parses and checks a build file; `overrides` replace args (from `--opt build-arg:NAME=value`). */
export function parseStepsFile(text: string, overrides: Record<string, string> = {}): StepsFile {
  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new StepsFileError(`not valid JSON: ${(e as Error).message}`);
  }
  const root = object(doc, "$");
  only(root, "$", ["args", "steps", "target", "image"]);
  const args = { ...(root.args === undefined ? {} : stringMap(root.args, "$.args")), ...overrides };
  const x = (s: string, path: string) => expand(s, args, path);

  const rawSteps = object(root.steps, "$.steps");
  const steps = new Map<string, Step>();
  for (const [name, raw] of Object.entries(rawSteps)) {
    const path = `$.steps.${name}`;
    if (!NAME_RE.test(name)) fail(path, "a step name is lowercase letters, digits, '.', '_' and '-'");
    if ((BUILTIN_SOURCES as readonly string[]).includes(name))
      fail(path, `"${name}" is a built-in source name`);
    const o = object(raw, path);
    only(o, path, ["image", "from", "dockerfile", "env", "workdir", "copy", "run"]);
    const starts = ["image", "from", "dockerfile"].filter((k) => o[k] !== undefined);
    if (starts.length !== 1)
      fail(path, `give exactly one of image, from or dockerfile (got ${starts.join(", ") || "none"})`);
    const step: Step = {
      image: o.image === undefined ? undefined : x(str(o.image, `${path}.image`), `${path}.image`),
      from: o.from === undefined ? undefined : str(o.from, `${path}.from`),
      dockerfile:
        o.dockerfile === undefined
          ? undefined
          : x(str(o.dockerfile, `${path}.dockerfile`), `${path}.dockerfile`),
      env: Object.fromEntries(
        Object.entries(o.env === undefined ? {} : stringMap(o.env, `${path}.env`)).map(([k, v]) => [
          k,
          x(v, `${path}.env.${k}`),
        ]),
      ),
      workdir: o.workdir === undefined ? undefined : x(str(o.workdir, `${path}.workdir`), `${path}.workdir`),
      copy: [],
      run: o.run === undefined ? [] : strings(o.run, `${path}.run`).map((c, i) => x(c, `${path}.run[${i}]`)),
    };
    if (o.copy !== undefined) {
      if (!Array.isArray(o.copy)) fail(`${path}.copy`, "want a list of {from, src, dest}");
      for (const [i, c] of (o.copy as Json[]).entries()) {
        const cp = `${path}.copy[${i}]`;
        const co = object(c, cp);
        only(co, cp, ["from", "src", "dest"]);
        step.copy.push({
          from: str(co.from, `${cp}.from`),
          src: x(str(co.src, `${cp}.src`), `${cp}.src`),
          dest: x(str(co.dest, `${cp}.dest`), `${cp}.dest`),
        });
      }
    }
    steps.set(name, step);
  }
  if (steps.size === 0) fail("$.steps", "a build needs at least one step");

  const names = [...steps.keys()];
  const target = root.target === undefined ? names[names.length - 1]! : str(root.target, "$.target");
  const known = (ref: string, path: string, sources: readonly string[]) => {
    if (!steps.has(ref) && !sources.includes(ref)) {
      fail(
        path,
        `unknown step ${JSON.stringify(ref)} (steps: ${names.join(", ")}; or ${sources.join(", ")})`,
      );
    }
  };
  known(target, "$.target", []);
  for (const [name, s] of steps) {
    if (s.from !== undefined) known(s.from, `$.steps.${name}.from`, BUILTIN_SOURCES);
    for (const [i, c] of s.copy.entries()) known(c.from, `$.steps.${name}.copy[${i}].from`, BUILTIN_SOURCES);
  }
  checkCycles(steps);

  const img = root.image === undefined ? {} : object(root.image, "$.image");
  only(img, "$.image", ["cmd", "entrypoint", "env", "workdir", "user", "labels"]);
  const image: ImageSpec = {
    cmd: img.cmd === undefined ? undefined : strings(img.cmd, "$.image.cmd"),
    entrypoint: img.entrypoint === undefined ? undefined : strings(img.entrypoint, "$.image.entrypoint"),
    env: img.env === undefined ? {} : stringMap(img.env, "$.image.env"),
    workdir: img.workdir === undefined ? undefined : str(img.workdir, "$.image.workdir"),
    user: img.user === undefined ? undefined : str(img.user, "$.image.user"),
    labels: img.labels === undefined ? {} : stringMap(img.labels, "$.image.labels"),
  };
  return { args, steps, target, image };
}

/** The steps a step needs, in the order it names them. */
export function dependencies(step: Step): string[] {
  const deps = [step.from, ...step.copy.map((c) => c.from)].filter(
    (d): d is string => d !== undefined && !(BUILTIN_SOURCES as readonly string[]).includes(d),
  );
  return [...new Set(deps)];
}

function checkCycles(steps: Map<string, Step>): void {
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, chain: string[]) => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      const cycle = [...chain.slice(chain.indexOf(name)), name];
      fail(`$.steps.${name}`, `steps depend on each other in a cycle: ${cycle.join(" -> ")}`);
    }
    state.set(name, "visiting");
    for (const d of dependencies(steps.get(name)!)) visit(d, [...chain, name]);
    state.set(name, "done");
  };
  for (const name of steps.keys()) visit(name, []);
}
