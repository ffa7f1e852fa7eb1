// Git repositories made by tests with the real git CLI, served over git:// (git daemon) and smart
// HTTP (git http-backend behind a Node server, optionally with basic auth) on loopback.
import { execFile, spawn } from "node:child_process";
import { chmod, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { type HttpServer, startHttpServer } from "./http.ts";
import { freePort, spawnService, tempDir } from "./process.ts";

const run = promisify(execFile);

/**
 * A hermetic environment for git: no system or user config, a fixed identity, and dates from
 * `time` so the same commits always get the same hashes.
 */
export function gitEnv(time = 1_600_000_000): NodeJS.ProcessEnv {
  const date = `${time} +0000`;
  return {
    ...process.env,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: "buildd test",
    GIT_AUTHOR_EMAIL: "test@buildd.invalid",
    GIT_COMMITTER_NAME: "buildd test",
    GIT_COMMITTER_EMAIL: "test@buildd.invalid",
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
  };
}

/** Runs git (asynchronously, so in-process git servers keep answering) and returns trimmed stdout. */
export async function git(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  try {
    const { stdout } = await run("git", args, {
      cwd: opts.cwd,
      env: opts.env ?? gitEnv(),
      maxBuffer: 64 << 20,
    });
    return stdout.trim();
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(
      `git ${args.join(" ")} (in ${opts.cwd ?? process.cwd()}) failed: ${err.stderr || err.message}`,
    );
  }
}

/** A file in a commit: text, or content with a mode (0o755 for executables), or a symlink; null deletes. */
export type GitFile = string | { content: string | Buffer; mode?: number } | { symlink: string } | null;

/** One commit: files changed on top of the previous commit of the same branch. */
export type CommitSpec = {
  files: Record<string, GitFile>;
  message?: string;
  /** Commit on this branch (created from the current HEAD if new); later commits, and HEAD, stay on it. */
  branch?: string;
  /** A lightweight tag, or an annotated one when given a message. */
  tag?: string | { name: string; message: string };
  /** Submodules to add in this commit; file paths and file:// URLs are allowed. */
  submodules?: { path: string; url: string; commit?: string }[];
};

export type GitRepo = {
  dir: string;
  /** Commit hashes in the order of the specs. */
  commits: string[];
  /** Removes the repo if makeGitRepo made its dir. */
  cleanup(): Promise<void>;
};

/** Makes a repo (default branch "main") with the given commits, in `dir` or a new temp dir. */
export async function makeGitRepo(commits: CommitSpec[]): Promise<GitRepo>;
export async function makeGitRepo(dir: string | undefined, commits: CommitSpec[]): Promise<GitRepo>;
export async function makeGitRepo(
  dirOrCommits: string | undefined | CommitSpec[],
  maybeCommits?: CommitSpec[],
): Promise<GitRepo> {
  const specs = Array.isArray(dirOrCommits) ? dirOrCommits : (maybeCommits ?? []);
  let dir = Array.isArray(dirOrCommits) ? undefined : dirOrCommits;
  let cleanup = async () => {};
  if (dir === undefined) {
    const tmp = await tempDir("git");
    dir = join(tmp.dir, "repo");
    cleanup = tmp.cleanup;
  }
  await mkdir(dir, { recursive: true });
  await git(["init", "-q", "-b", "main", dir]);
  const hashes: string[] = [];
  for (const [i, spec] of specs.entries()) {
    const env = gitEnv(1_600_000_000 + i);
    const g = (args: string[]) => git(args, { cwd: dir, env });
    if (spec.branch) await switchBranch(g, spec.branch);
    for (const [path, file] of Object.entries(spec.files)) await writeGitFile(join(dir, path), file);
    for (const sub of spec.submodules ?? []) {
      await g(["-c", "protocol.file.allow=always", "submodule", "add", "-q", sub.url, sub.path]);
      if (sub.commit) await git(["checkout", "-q", sub.commit], { cwd: join(dir, sub.path), env });
    }
    await g(["add", "-A"]);
    await g(["commit", "-q", "--allow-empty", "-m", spec.message ?? `commit ${i}`]);
    hashes.push(await g(["rev-parse", "HEAD"]));
    if (typeof spec.tag === "string") await g(["tag", spec.tag]);
    else if (spec.tag) await g(["tag", "-a", spec.tag.name, "-m", spec.tag.message]);
  }
  return { dir, commits: hashes, cleanup };
}

async function switchBranch(g: (args: string[]) => Promise<string>, branch: string): Promise<void> {
  const unborn = await g(["rev-parse", "-q", "--verify", "HEAD"]).then(
    () => false,
    () => true,
  );
  if (unborn) return void (await g(["symbolic-ref", "HEAD", `refs/heads/${branch}`]));
  const exists = await g(["rev-parse", "-q", "--verify", `refs/heads/${branch}`]).then(
    () => true,
    () => false,
  );
  await g(exists ? ["checkout", "-q", branch] : ["checkout", "-q", "-b", branch]);
}

async function writeGitFile(path: string, file: GitFile): Promise<void> {
  await rm(path, { force: true, recursive: true });
  if (file === null) return;
  await mkdir(dirname(path), { recursive: true });
  if (typeof file === "string") return writeFile(path, file);
  if ("symlink" in file) return symlink(file.symlink, path);
  await writeFile(path, file.content);
  if (file.mode !== undefined) await chmod(path, file.mode);
}

/** A running git server; `url("repo")` names the repo at `<baseDir>/repo`. */
export type GitServer = {
  url(repo: string): string;
  port: number;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/** Serves every repo under `baseDir` over git:// with `git daemon` (read-only). */
export async function startGitDaemon(
  baseDir: string,
  opts: { signal?: AbortSignal } = {},
): Promise<GitServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const args = ["daemon", "--reuseaddr", "--export-all", "--informative-errors", `--base-path=${baseDir}`];
    try {
      const service = await spawnService("git", [...args, "--listen=127.0.0.1", `--port=${port}`], {
        env: gitEnv(),
        readyCheck: () => canConnect(port),
        signal: opts.signal,
      });
      return {
        url: (repo) => `git://127.0.0.1:${port}/${repo}`,
        port,
        stop: service.stop,
        [Symbol.asyncDispose]: service.stop,
      };
    } catch (e) {
      if (attempt < 5 && /unable to allocate|in use/i.test((e as Error).message)) continue;
      throw e;
    }
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A smart-HTTP git server; it also counts requests like every test HTTP server. */
export type GitHttpServer = GitServer &
  Pick<HttpServer, "stats" | "log" | "resetStats"> & {
    /** "http://127.0.0.1:PORT". */
    baseUrl: string;
    /** `url(repo)` with the credentials as userinfo, for clients that take them from the URL. */
    urlWithCredentials(repo: string): string;
  };

/**
 * Serves every repo under `baseDir` over smart HTTP via `git http-backend` (CGI). With `auth`,
 * requests need basic credentials (401 otherwise) and pushes are allowed.
 */
export async function startGitHttpServer(
  baseDir: string,
  opts: { auth?: { username: string; password: string }; signal?: AbortSignal } = {},
): Promise<GitHttpServer> {
  const { auth } = opts;
  const expected = auth && `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  const server = await startHttpServer((req, res) => {
    if (expected && req.headers.authorization !== expected) {
      res
        .writeHead(401, { "www-authenticate": 'Basic realm="buildd test git"' })
        .end("authentication required\n");
      return;
    }
    return httpBackend(baseDir, auth?.username, req, res);
  }, opts);
  const userinfo = auth ? `${encodeURIComponent(auth.username)}:${encodeURIComponent(auth.password)}@` : "";
  return {
    url: (repo) => `${server.url}/${repo}`,
    urlWithCredentials: (repo) => `http://${userinfo}127.0.0.1:${server.port}/${repo}`,
    baseUrl: server.url,
    port: server.port,
    stats: server.stats,
    log: server.log,
    resetStats: server.resetStats,
    stop: server.stop,
    [Symbol.asyncDispose]: server.stop,
  };
}

/** Runs one CGI request through `git http-backend`, copying its Status and headers to the response. */
function httpBackend(baseDir: string, user: string | undefined, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? "/", "http://x");
  const env: NodeJS.ProcessEnv = {
    ...gitEnv(),
    GIT_PROJECT_ROOT: baseDir,
    GIT_HTTP_EXPORT_ALL: "1",
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method ?? "GET",
    CONTENT_TYPE: req.headers["content-type"] ?? "",
    REMOTE_ADDR: "127.0.0.1",
    ...(user ? { REMOTE_USER: user } : {}),
    // Chunked bodies have no length: http-backend then reads to EOF.
    ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
    ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
    ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: req.headers["git-protocol"] as string } : {}),
  };
  return new Promise<void>((resolve) => {
    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
    let head = Buffer.alloc(0);
    let headersDone = false;
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n") >= 0 ? head.indexOf("\r\n\r\n") + 4 : -1;
      const endLf = head.indexOf("\n\n") >= 0 ? head.indexOf("\n\n") + 2 : -1;
      const cut = end >= 0 && (endLf < 0 || end <= endLf) ? end : endLf;
      if (cut < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, cut).toString("latin1").split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(cut));
    });
    child.on("close", (code) => {
      if (!headersDone) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.write(`git http-backend failed (${code}): ${stderr}\n`);
      }
      res.end();
      resolve();
    });
    child.stdin.on("error", () => {});
    req.pipe(child.stdin);
  });
}
