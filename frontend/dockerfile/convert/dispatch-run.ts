// RUN: the command (shell or exec form, or a heredoc script), its --mount list turned into LLB
// mounts (bind, cache, tmpfs, secret, ssh), network and security modes, proxy settings.
import path from "node:path/posix";
import { type MountSpec, mkdir, mkfile, type RunOptions, scratch, type State } from "../../../llb/index.ts";
import { goList } from "../gofmt.ts";
import type { CommandOf, Mount } from "../instructions/commands.ts";
import { parseMount } from "../instructions/mount.ts";
import { chompHeredocContent, parseHeredoc } from "../parser/heredoc.ts";
import { cleanPath } from "./context.ts";
import { withShell } from "./dispatch-meta.ts";
import { type DispatchOpt, type DispatchState, envOf } from "./dispatch-state.ts";
import { commitToHistory } from "./image.ts";
import { INTERNAL_NAMES, prefixCommand, summarizeHeredoc, uppercaseCmd } from "./progress.ts";
import { expandWithLint } from "./expansion.ts";

/** What the mounts of one RUN add to its options. */
interface RunMounts {
  mounts: MountSpec[];
  secretEnv: NonNullable<RunOptions["secretEnv"]>;
}

function dispatchMounts(
  d: DispatchState,
  c: CommandOf<"run">,
  sources: (DispatchState | undefined)[],
  opt: DispatchOpt,
): { out: RunMounts; parsed: Mount[] } {
  const out: RunMounts = { mounts: [], secretEnv: [] };
  const parsed: Mount[] = [];
  const expand = (w: string) => expandWithLint(d, c, opt, w);
  let sshIndex = 0;
  for (const [i, spec] of c.mountSpecs.entries()) {
    const m = parseMount(spec, expand);
    parsed.push(m);
    if (m.from === "" && m.type === "cache") m.from = "scratch";
    let st: State = opt.buildContext;
    if (m.from !== "") {
      const src = sources[i];
      if (!src?.dispatched)
        throw new Error(
          `cannot mount from stage ${JSON.stringify(m.from)}, it needs to be defined before current stage ${JSON.stringify(d.stageName)}`,
        );
      st = src.state;
    }
    if (m.type === "secret") {
      addSecret(m, out);
      continue;
    }
    if (m.type === "ssh") {
      if (m.source !== "") throw new Error("ssh does not support source");
      const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined;
      out.mounts.push({
        type: "ssh",
        dest: m.target || `/run/buildkit/ssh_agent.${sshIndex}`,
        id: m.id || undefined,
        optional: !m.required,
        ...(fileOpts ? { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? 0o600 } : {}),
      });
      sshIndex++;
      continue;
    }
    let target = m.target;
    if (!path.isAbsolute(cleanPath(target))) target = path.join("/", d.state.getDir(), target);
    if (target === "/" || cleanPath(target) === "/")
      throw new Error(`invalid mount target ${JSON.stringify(target)}`);
    const source = path.join("/", m.source);
    let selector = source !== "/" ? source : undefined;
    if (m.type === "tmpfs") {
      out.mounts.push({ type: "tmpfs", dest: target, size: m.sizeLimit || undefined });
    } else if (m.type === "cache") {
      if (!selector && (m.uid !== undefined || m.gid !== undefined || m.mode !== undefined)) {
        st = st.file(mkdir("/cache", m.mode ?? 0o755, { owner: { user: m.uid ?? 0, group: m.gid ?? 0 } }), {
          customName: INTERNAL_NAMES.cacheMountPermissions,
        });
        selector = "/cache";
      }
      const id = m.id || cleanPath(m.target);
      out.mounts.push({
        type: "cache",
        dest: target,
        id: `${opt.cacheIdNamespace}/${id}`,
        sharing: m.sharing || "shared",
        from: st,
        selector,
        readonly: m.readOnly || undefined,
      });
    } else {
      out.mounts.push({
        type: "bind",
        dest: target,
        from: st,
        selector,
        readonly: m.readOnly,
        noOutput: !m.readOnly || undefined,
      });
    }
    if (m.from === "") d.ctxPaths.add(path.join("/", m.source));
  }
  return { out, parsed };
}

function addSecret(m: Mount, out: RunMounts): void {
  let id = m.source !== "" ? m.source : m.id;
  if (id === "") {
    if (m.target === "") throw new Error("one of source, target required");
    id = path.basename(m.target);
  }
  if (m.env !== undefined) out.secretEnv.push({ id, name: m.env, optional: !m.required });
  const dest =
    m.target !== "" ? m.target : m.env === undefined ? `/run/secrets/${path.basename(id)}` : undefined;
  if (dest === undefined) return;
  const fileOpts = m.uid !== undefined || m.gid !== undefined || m.mode !== undefined;
  out.mounts.push({
    type: "secret",
    dest,
    id,
    optional: !m.required,
    ...(fileOpts ? { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? 0o400 } : {}),
  });
}

/** The env a RUN shows in its progress name: secrets exposed as env vars read as "****". */
function maskSecrets(env: (k: string) => string | undefined, mounts: Mount[]) {
  const masked = new Set(mounts.filter((m) => m.type === "secret" && m.env !== undefined).map((m) => m.env!));
  return (k: string) => (masked.has(k) ? "****" : env(k));
}

/** "|2 A=1 B=2 /bin/sh -c make": the declared ARGs and their values, then the command. */
export function runCommandString(
  args: readonly string[],
  buildArgs: readonly { key: string; value?: string }[],
  env: (k: string) => string | undefined,
): string {
  const values = new Map<string, string>();
  for (const a of buildArgs) values.set(a.key, env(a.key) ?? a.value ?? "");
  const prefix = values.size > 0 ? [`|${values.size}`, ...[...values].map(([k, v]) => `${k}=${v}`)] : [];
  return [...prefix, ...args].join(" ");
}

/** The HTTP(S)_PROXY-style build args (any case) that RUN passes as proxy settings. */
export function proxyEnvFromBuildArgs(args: Readonly<Record<string, string>>): DispatchOpt["proxyEnv"] {
  const keys = {
    http_proxy: "httpProxy",
    https_proxy: "httpsProxy",
    ftp_proxy: "ftpProxy",
    no_proxy: "noProxy",
    all_proxy: "allProxy",
  } as const;
  const out: NonNullable<DispatchOpt["proxyEnv"]> = {};
  let any = false;
  for (const [k, v] of Object.entries(args)) {
    const field = keys[k.toLowerCase() as keyof typeof keys];
    if (field) {
      out[field] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

export function dispatchRun(
  d: DispatchState,
  c: CommandOf<"run">,
  sources: (DispatchState | undefined)[],
  opt: DispatchOpt,
): void {
  let customName = c.code;
  let args = c.run.cmdLine;
  const extraMounts: MountSpec[] = [];
  const files = c.run.files;
  if (files.length > 0) {
    if (args.length !== 1 || !c.run.prependShell) {
      throw new Error(`parsing produced an invalid run command: ${goList(args)}`);
    }
    const first = files[0]!;
    if (parseHeredoc(args[0]!)) {
      const data = first.chomp ? chompHeredocContent(first.data) : first.data;
      if (d.image.os !== "windows" && first.data.startsWith("#!")) {
        // A script with a shebang runs as a file, with the interpreter it names.
        const doc = scratch()
          .dir("/")
          .file(mkfile(first.name, 0o755, data), {
            customName: INTERNAL_NAMES.inlineDocument,
            platform: d.platform,
          });
        extraMounts.push({ dest: "/dev/pipes/", from: doc, selector: "/", readonly: true });
        args = [path.join("/dev/pipes/", first.name)];
      } else {
        args = [data];
      }
      customName += ` (${summarizeHeredoc(first.data)})`;
    } else {
      // Heredocs inside a longer command: hand the whole text to the shell.
      args = [args[0]! + files.map((f) => `\n${f.data}${f.name}`).join("")];
    }
  }
  if (c.run.prependShell) args = withShell(d, args);

  const { out, parsed } = dispatchMounts(d, c, sources, opt);
  const network = c.network === "" ? "" : opt.lex.processWord(c.network, envOf(d));
  const security = c.security === "" ? "" : opt.lex.processWord(c.security, envOf(d));
  if (network !== "" && !["default", "none", "host"].includes(network)) {
    throw new Error(`unsupported network mode ${JSON.stringify(network)}`);
  }
  if (security !== "" && !["sandbox", "insecure"].includes(security)) {
    throw new Error(`unsupported security mode ${JSON.stringify(security)}`);
  }

  const env = envOf(d);
  const rawLex = opt.lex.with({ rawQuotes: true, skipUnsetEnv: true });
  let shown = customName;
  try {
    shown = rawLex.processWord(customName, maskSecrets(env, parsed));
  } catch {
    // an unparsable command line is shown as written
  }
  const name = prefixCommand(d, uppercaseCmd(shown), {
    prefixPlatform: opt.prefixPlatform,
    platform: d.platform,
    env,
  });
  const run = d.state.run({
    args,
    customName: name,
    description: { "com.docker.dockerfile.v1.command": c.code },
    ...(d.ignoreCache ? { ignoreCache: true } : {}),
    ...(opt.proxyEnv ? { proxyEnv: opt.proxyEnv } : {}),
    mounts: [...extraMounts, ...out.mounts],
    ...(out.secretEnv.length > 0 ? { secretEnv: out.secretEnv } : {}),
    ...(network === "none" || network === "host" ? { network } : {}),
    ...(security === "insecure" ? { security: "insecure" as const } : {}),
    extraHosts: opt.extraHosts,
    platform: d.platform,
  });
  opt.sourceMap.locations.set(name, c.location);
  d.state = run.root();
  commitToHistory(d.image, `RUN ${runCommandString(args, d.buildArgs, env)}`, {
    withLayer: true,
    ranOp: true,
    created: opt.epoch,
  });
}
