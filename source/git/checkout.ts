// Turning a cached commit into files: a throw-away repository borrows the cache's objects
// (alternates, nothing copied), checks the commit out with submodules, and its work tree, or
// one sub-directory of it, becomes the target. With keepGitDir the repository stays, made
// self-contained. Modes and mtimes are normalized so the same commit always gives the same layer.
import {
  chmod,
  copyFile,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { walk } from "../../fsutil/walk.ts";
import { resolveInRoot } from "../../fsutil/resolve.ts";
import { type GitOutput, type GitSsh, runGit } from "./command.ts";
import { GitSourceError } from "./errors.ts";

/** How the checked-out `.git` names what it has. */
export type Head =
  | { kind: "detached" }
  | { kind: "branch"; name: string }
  | { kind: "tag"; name: string; object: string };

/** The commit checked out and its time, which every file got as mtime (reproducible layers). */
export type CheckoutResult = { commit: string; mtime: Date };

/** Everything `materialize` needs; the fetcher holds the remote's lock around it. */
export type MaterializeInput = {
  /** The cache's bare repository, which has `commit`. */
  bare: string;
  /** The remote's URL without credentials (becomes `origin` of a kept `.git`). */
  remote: string;
  commit: string;
  /** An existing empty directory. */
  target: string;
  subdir: string;
  keepGitDir: boolean;
  head: Head;
  submodules: boolean;
  config: [string, string][];
  secrets: string[];
  ssh: GitSsh;
  signal?: AbortSignal;
  output?: GitOutput;
};

/** Checks `commit` out into `target`; on failure `target` is left empty. */
export async function materialize(m: MaterializeInput): Promise<CheckoutResult> {
  const work = m.keepGitDir ? m.target : await mkdtemp(join(m.target, ".buildd-git-"));
  const doing = `checking out ${m.commit} of ${m.remote}`;
  const git: Git = (args, extra = {}) =>
    runGit(
      {
        args,
        cwd: work,
        signal: m.signal,
        doing,
        ...(extra.input === undefined ? {} : { input: extra.input }),
        ...(extra.network ? { config: m.config, secrets: m.secrets, output: m.output } : {}),
      },
      m.ssh,
    );
  try {
    const gitDir = join(work, ".git");
    await git(["init", "-q", "--template="]);
    await mkdir(join(gitDir, "objects", "info"), { recursive: true });
    await writeFile(join(gitDir, "objects", "info", "alternates"), `${join(m.bare, "objects")}\n`);
    await copyFile(join(m.bare, "shallow"), join(gitDir, "shallow")).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
    // Relative submodule URLs resolve against origin.
    await git(["remote", "add", "origin", m.remote]);
    await setHead(git, m.head, m.commit);
    await git(["reset", "-q", "--hard", "HEAD"]);
    if (m.submodules && (await isFile(join(work, ".gitmodules")))) await updateSubmodules(git);
    const seconds = Number((await git(["show", "-s", "--format=%ct", m.commit])).trim());
    const mtime = new Date(seconds * 1000);
    if (m.keepGitDir) {
      // Copy the borrowed objects in (what `git clone --dissociate` does), then forget the cache.
      await git(["repack", "-a", "-d", "-n", "-q"]);
      await rm(join(gitDir, "objects", "info", "alternates"));
      await trimShallow(gitDir, git);
      await git(["reflog", "expire", "--all", "--expire=now"]);
      await rm(join(gitDir, "ORIG_HEAD"), { force: true });
    } else {
      await rm(gitDir, { recursive: true, force: true });
      await removeGitLinks(work);
      const from = m.subdir ? await subdirPath(work, m.subdir, m) : work;
      for (const name of await readdir(from)) await rename(join(from, name), join(m.target, name));
      await rm(work, { recursive: true, force: true });
    }
    await normalize(m.target, mtime);
    return { commit: m.commit, mtime };
  } catch (e) {
    for (const name of await readdir(m.target).catch(() => [])) {
      await rm(join(m.target, name), { recursive: true, force: true });
    }
    throw e;
  }
}

type Git = (args: string[], extra?: { network?: boolean; input?: string }) => Promise<string>;

/** The cache's shallow list names commits this repository never got: keep only its own. */
async function trimShallow(gitDir: string, git: Git): Promise<void> {
  const path = join(gitDir, "shallow");
  const lines = (await readFile(path, "utf8").catch(() => "")).split("\n").filter((l) => l !== "");
  if (lines.length === 0) return;
  const answers = (
    await git(["cat-file", "--batch-check=%(objectname)"], { input: `${lines.join("\n")}\n` })
  ).split("\n");
  const present = lines.filter((id) => answers.includes(id));
  if (present.length === 0) await rm(path);
  else await writeFile(path, `${present.join("\n")}\n`);
}

async function setHead(git: Git, head: Head, commit: string): Promise<void> {
  if (head.kind === "branch") {
    await git(["update-ref", `refs/heads/${head.name}`, commit]);
    await git(["symbolic-ref", "HEAD", `refs/heads/${head.name}`]);
    return;
  }
  if (head.kind === "tag") await git(["update-ref", `refs/tags/${head.name}`, head.object]);
  await git(["update-ref", "--no-deref", "HEAD", commit]);
}

/** Submodules, recursively and shallow; file:// and local-path URLs are refused by protocol.allow. */
async function updateSubmodules(git: Git): Promise<void> {
  const args = ["submodule", "update", "--init", "--recursive"];
  try {
    await git([...args, "--depth=1"], { network: true });
  } catch (e) {
    if ((e as GitSourceError).code === "cancelled" || !/shallow|depth/i.test((e as Error).message)) throw e;
    await git(args, { network: true });
  }
}

/** The sub-directory inside the work tree, resolved as in a chroot (a symlink cannot lead out). */
async function subdirPath(work: string, subdir: string, m: MaterializeInput): Promise<string> {
  const path = await resolveInRoot(work, subdir);
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) {
    throw new GitSourceError(
      "not-found",
      `sub-directory ${JSON.stringify(subdir)} not found in ${m.remote} at ${m.commit}`,
    );
  }
  if (!st.isDirectory()) {
    throw new GitSourceError(
      "invalid-argument",
      `sub-directory ${JSON.stringify(subdir)} of ${m.remote} at ${m.commit} is not a directory`,
    );
  }
  return path;
}

/** Submodule work trees keep a `.git` file pointing into the deleted repository: drop them. */
async function removeGitLinks(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.name === ".git") await rm(path, { recursive: true, force: true });
    else if (e.isDirectory()) await removeGitLinks(path);
  }
}

const BATCH = 64;

/**
 * Directories 0755, files 0644 or 0755 (git records only the executable bit), everything's
 * mtime the commit's time: independent of the daemon's umask and of when the checkout ran.
 * Inside `.git` only times change.
 */
async function normalize(root: string, mtime: Date): Promise<void> {
  const entries: { path: string; kind: "dir" | "file" | "other"; mode: number; inGit: boolean }[] = [];
  for await (const e of walk(root)) {
    const mode = Number(e.stat.mode);
    const kind = e.stat.isDirectory() ? "dir" : e.stat.isFile() ? "file" : "other";
    entries.push({ path: join(root, e.path), kind, mode, inGit: `/${e.path}/`.includes("/.git/") });
  }
  for (let i = 0; i < entries.length; i += BATCH) {
    await Promise.all(
      entries.slice(i, i + BATCH).map(async (e) => {
        if (e.inGit || e.kind === "other") return;
        const want = e.kind === "dir" || e.mode & 0o100 ? 0o755 : 0o644;
        if ((e.mode & 0o7777) !== want) await chmod(e.path, want);
      }),
    );
  }
  // Children before parents: setting a child's time would not touch the parent, but creating did.
  entries.reverse();
  for (let i = 0; i < entries.length; i += BATCH) {
    await Promise.all(entries.slice(i, i + BATCH).map((e) => lutimes(e.path, mtime, mtime)));
  }
  await lutimes(root, mtime, mtime);
}

async function isFile(path: string): Promise<boolean> {
  return lstat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
