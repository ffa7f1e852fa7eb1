// Running the git CLI for the daemon: a clean environment (no host or user config, no prompts,
// no hooks), credentials passed through GIT_CONFIG_* variables so they never show up in argv or
// on disk, the whole process group killed on cancel, and secrets cut out of every message.
import { spawn } from "node:child_process";
import type { GitAuth } from "./identifier.ts";
import { GitSourceError } from "./errors.ts";

/** Where git's progress output goes (a VertexLog fits). */
export type GitOutput = { write(stream: 1 | 2, data: Uint8Array): void };

/** How git reaches an ssh remote. */
export type GitSsh = {
  /** Path of an ssh agent socket (the session's forwarded agent). */
  authSock?: string;
  /** A file of known_hosts lines; without one, host keys are not checked (as in BuildKit). */
  knownHostsFile?: string;
};

/** One git invocation. */
export type GitCommand = {
  args: string[];
  cwd?: string;
  /** Extra `-c key=value` settings, passed through the environment. */
  config?: [string, string][];
  /** Extra environment (e.g. GIT_INDEX_FILE). */
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Written to git's stdin. */
  input?: string;
  /** Streams stderr here as it arrives (fetch progress). */
  output?: GitOutput;
  /** Strings that must never appear in an error message (tokens, headers). */
  secrets?: string[];
  /** What is being done, for error messages ("fetching git://host/repo"). */
  doing: string;
};

/** Settings every git command gets: only network transports, no hooks, no auto-gc, quiet hints. */
const BASE_CONFIG: [string, string][] = [
  ["protocol.allow", "never"],
  ["protocol.https.allow", "always"],
  ["protocol.http.allow", "always"],
  ["protocol.git.allow", "always"],
  ["protocol.ssh.allow", "always"],
  ["core.hooksPath", "/dev/null"],
  ["gc.auto", "0"],
  ["maintenance.auto", "false"],
  ["init.defaultBranch", "main"],
  ["advice.detachedHead", "false"],
  ["credential.helper", ""],
];

const STDERR_LIMIT = 64 * 1024;

/** Runs git and returns its stdout; rejects with stderr's tail (secrets redacted) on failure. */
export async function runGit(cmd: GitCommand, ssh: GitSsh = {}): Promise<string> {
  cmd.signal?.throwIfAborted();
  const secrets = (cmd.secrets ?? []).filter((s) => s.length > 0);
  const env = gitEnvironment([...BASE_CONFIG, ...(cmd.config ?? [])], ssh, cmd.env);
  return new Promise<string>((resolve, reject) => {
    // Its own process group: remote helpers and ssh are killed with git on cancel.
    const child = spawn("git", cmd.args, {
      cwd: cmd.cwd,
      env,
      detached: true,
      stdio: [cmd.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (cmd.input !== undefined && child.stdin) {
      child.stdin.on("error", () => {});
      child.stdin.end(cmd.input);
    }
    const stdout: Buffer[] = [];
    let stderr = "";
    const kill = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    cmd.signal?.addEventListener("abort", kill, { once: true });
    child.stdout!.on("data", (c: Buffer) => stdout.push(c));
    child.stderr!.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString("utf8")).slice(-STDERR_LIMIT);
      cmd.output?.write(2, redactBytes(c, secrets));
    });
    child.once("error", (e) => {
      cmd.signal?.removeEventListener("abort", kill);
      reject(new GitSourceError("git-failed", `${cmd.doing}: cannot run git: ${e.message}`));
    });
    child.once("close", (code, sig) => {
      cmd.signal?.removeEventListener("abort", kill);
      if (cmd.signal?.aborted) {
        reject(new GitSourceError("cancelled", `${cmd.doing}: cancelled`, { cause: cmd.signal.reason }));
        return;
      }
      if (code === 0) {
        resolve(Buffer.concat(stdout).toString("utf8"));
        return;
      }
      const detail = redact(stderr.trim(), secrets).split("\n").slice(-15).join("\n");
      reject(
        new GitSourceError(
          "git-failed",
          `${cmd.doing}: git ${cmd.args[0]} failed (${sig ? `signal ${sig}` : `exit ${code}`}): ${detail}`,
        ),
      );
    });
  });
}

/**
 * The environment of a git process, built from nothing: the host's and user's git config are
 * not read, nothing prompts, and `config` travels as GIT_CONFIG_COUNT/KEY/VALUE, which git
 * applies like `-c` and hands on to the commands it runs (submodules, remote helpers).
 */
export function gitEnvironment(
  config: [string, string][],
  ssh: GitSsh = {},
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: "/dev/null",
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_SSH_COMMAND: sshCommand(ssh.knownHostsFile),
    GIT_CONFIG_COUNT: String(config.length),
  };
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  if (ssh.authSock) env["SSH_AUTH_SOCK"] = ssh.authSock;
  return { ...env, ...extra };
}

/** ssh without the host's ssh config and never interactive; host keys checked when we have them. */
function sshCommand(knownHostsFile: string | undefined): string {
  const base = "ssh -F /dev/null -o BatchMode=yes";
  if (knownHostsFile === undefined)
    return `${base} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null`;
  if (!/^[\w./-]+$/.test(knownHostsFile)) {
    throw new GitSourceError(
      "invalid-argument",
      `known_hosts path ${JSON.stringify(knownHostsFile)} is unsafe`,
    );
  }
  return `${base} -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${knownHostsFile}`;
}

/**
 * The `-c` settings that authenticate to an http(s) remote: an Authorization header scoped to the
 * remote's URL (to github.com as a whole for GitHub, like actions/checkout), so submodules on
 * other hosts never see it. Credentials in the URL itself become the same header.
 */
export function authConfig(
  remoteUrl: string,
  auth: GitAuth | undefined,
  urlCredentials?: string,
): [string, string][] {
  let value: string | undefined;
  if (auth?.header) value = auth.header;
  else if (auth?.token) value = `Basic ${Buffer.from(`x-access-token:${auth.token}`).toString("base64")}`;
  else if (urlCredentials) value = `Basic ${Buffer.from(urlCredentials).toString("base64")}`;
  if (value === undefined || !/^https?:\/\//.test(remoteUrl)) return [];
  if (/[\r\n]/.test(value)) {
    throw new GitSourceError(
      "invalid-argument",
      "the git auth header contains a line break; check the secret",
    );
  }
  return [[`http.${tokenScope(remoteUrl)}.extraHeader`, `Authorization: ${value}`]];
}

/** Every string that could leak a credential from `auth` and URL userinfo. */
export function secretsOf(auth: GitAuth | undefined, urlCredentials?: string): string[] {
  const out: string[] = [];
  if (auth?.header) out.push(auth.header);
  if (auth?.token) {
    out.push(auth.token, Buffer.from(`x-access-token:${auth.token}`).toString("base64"));
  }
  if (urlCredentials) {
    out.push(urlCredentials, Buffer.from(urlCredentials).toString("base64"));
    const password = urlCredentials.slice(urlCredentials.indexOf(":") + 1);
    if (password.length >= 4) out.push(password);
  }
  return out;
}

function tokenScope(remote: string): string {
  for (const prefix of ["https://github.com/", "https://www.github.com/"]) {
    if (remote.startsWith(prefix)) return prefix;
  }
  return remote;
}

/** Replaces every secret in `text` with "xxxxx". */
export function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("xxxxx");
  return out;
}

function redactBytes(chunk: Buffer, secrets: string[]): Uint8Array {
  if (secrets.length === 0) return chunk;
  return Buffer.from(redact(chunk.toString("utf8"), secrets));
}
