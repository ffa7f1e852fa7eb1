// The git source's engine: one bare repository per remote under the daemon's root, fetched only
// when a commit is missing, and checkouts materialized from it into directories the worker turns
// into snapshots.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { type CheckoutResult, type Head, materialize } from "./checkout.ts";
import { authConfig, type GitOutput, type GitSsh, runGit, secretsOf } from "./command.ts";
import { GitSourceError } from "./errors.ts";
import { checkRef, checkRemote, cleanSubdir, type GitAuth, isCommitId } from "./identifier.ts";
import { lsRemotePatterns, pickRemoteRef, type RemoteRef, refNotFound, splitCredentials } from "./remote.ts";

/** How to reach a remote: credentials and ssh settings, resolved by the caller from the session. */
export type GitAccess = {
  signal?: AbortSignal;
  auth?: GitAuth;
  /** known_hosts lines for ssh remotes (the op's `git.knownsshhosts`). */
  knownHosts?: string;
  /** Path of the ssh agent socket forwarded from the session. */
  sshAuthSock?: string;
  /** Receives git's progress output. */
  output?: GitOutput;
};

/** What `checkout` materializes. */
export type CheckoutOptions = GitAccess & {
  /** Keep a `.git` directory (ignored with `subdir`, as in BuildKit). */
  keepGitDir?: boolean;
  /** Only this sub-directory's contents. */
  subdir?: string;
  /** Check out submodules recursively (default true). */
  submodules?: boolean;
};

/** Counters of network operations, for tests and metrics. */
export type GitFetcherStats = { lsRemote: number; fetch: number };

/**
 * Fetches git remotes into a cache and checks commits out of it. One per daemon: the per-remote
 * lock lives here.
 */
export class GitFetcher {
  readonly root: string;
  #repos: string;
  #tmp: string;
  #locks = new KeyedLock();
  #stats: GitFetcherStats = { lsRemote: 0, fetch: 0 };

  private constructor(root: string) {
    this.root = root;
    this.#repos = join(root, "repos");
    this.#tmp = join(root, "tmp");
  }

  /** Opens the cache under `root`, dropping what an interrupted run left half-made. */
  static async open(root: string): Promise<GitFetcher> {
    if (!isAbsolute(root)) {
      throw new GitSourceError(
        "invalid-argument",
        `opening the git cache: ${JSON.stringify(root)} is not absolute`,
      );
    }
    const f = new GitFetcher(root);
    await mkdir(f.#repos, { recursive: true, mode: 0o700 });
    await rm(f.#tmp, { recursive: true, force: true });
    await mkdir(f.#tmp, { recursive: true, mode: 0o700 });
    for (const name of await readdir(f.#repos)) {
      if (name.startsWith(".tmp-")) await rm(join(f.#repos, name), { recursive: true, force: true });
    }
    return f;
  }

  /** Network operations so far. */
  stats(): GitFetcherStats {
    return { ...this.#stats };
  }

  /** The bare repository that caches `remote` (it may not exist yet). */
  repoDir(remote: string): string {
    return join(this.#repos, remoteKey(splitCredentials(remote).url));
  }

  /**
   * The commit `ref` names at `remote`: a 40-hex ref as it is, without network (checkout fetches
   * it if needed); else `git ls-remote` (branches before tags, annotated tags peeled; "" is the
   * default branch). A ref the remote lacks is a "not-found" error.
   */
  async resolve(remote: string, ref: string, opts: GitAccess = {}): Promise<string> {
    checkRemote(remote, "resolving a git ref");
    checkRef(ref, `resolving a git ref at ${remote}`);
    if (isCommitId(ref)) return ref;
    const found = await this.#lsRemote(remote, ref, opts);
    if (found === undefined) throw refNotFound(ref, splitCredentials(remote).url);
    return found.commit;
  }

  /**
   * Materializes `commit` of `remote` into the empty directory `target`: fetched into the
   * remote's cache first unless it is already there. `ref` is what the op asked for; with
   * `keepGitDir` a branch becomes the checked-out branch of `.git`, a tag its tag.
   */
  async checkout(
    remote: string,
    commit: string,
    ref: string,
    target: string,
    opts: CheckoutOptions = {},
  ): Promise<CheckoutResult> {
    checkRemote(remote, "checking out a git commit");
    const url = splitCredentials(remote).url;
    checkRef(ref, `checking out ${url}`);
    if (!isCommitId(commit)) {
      throw new GitSourceError(
        "invalid-argument",
        `checking out ${url}: ${JSON.stringify(commit)} is not a 40-hex commit`,
      );
    }
    const subdir = cleanSubdir(opts.subdir ?? "", `checking out ${url}`);
    await requireEmptyDir(target, `checking out ${url}`);
    const bare = this.repoDir(remote);
    return this.#locks.run(
      bare,
      async () => {
        await this.#ensureRepo(bare, url, opts.signal);
        if (!(await hasCommit(bare, commit, opts.signal)))
          await this.#fetchCommit(bare, remote, commit, ref, opts);
        const keepGitDir = opts.keepGitDir === true && subdir === "";
        const head = keepGitDir
          ? await this.#headFor(bare, remote, commit, ref, opts)
          : { kind: "detached" as const };
        return this.#withSsh(opts, async (ssh) =>
          materialize({
            bare,
            remote: url,
            commit,
            target,
            subdir,
            keepGitDir,
            head,
            submodules: opts.submodules !== false,
            config: this.#authConfig(remote, opts.auth),
            secrets: this.#secrets(remote, opts.auth),
            ssh,
            signal: opts.signal,
            output: opts.output,
          }),
        );
      },
      opts.signal,
    );
  }

  /** Creates the bare repository for a remote under a temporary name and renames it into place. */
  async #ensureRepo(bare: string, url: string, signal?: AbortSignal): Promise<void> {
    if (await exists(join(bare, "HEAD"))) return;
    const tmp = join(this.#repos, `.tmp-${randomBytes(8).toString("hex")}`);
    try {
      await runGit({
        args: ["init", "-q", "--bare", "--template=", tmp],
        signal,
        doing: `creating the cache of ${url}`,
      });
      // HEAD later names the remote's default branch once it has been fetched.
      await runGit({
        args: ["symbolic-ref", "HEAD", "refs/buildd/unknown"],
        cwd: tmp,
        signal,
        doing: `creating the cache of ${url}`,
      });
      await writeFile(join(tmp, "description"), `buildd cache of ${url}\n`);
      await rename(tmp, bare);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Fetches `commit` into the cache: through the ref it came from when that ref still points to
   * it (keeping branch/tag names for later), else by its id; shallow (depth 1) like BuildKit.
   */
  async #fetchCommit(
    bare: string,
    remote: string,
    commit: string,
    ref: string,
    opts: GitAccess,
  ): Promise<void> {
    const url = splitCredentials(remote).url;
    await removeStaleLocks(bare);
    if (!isCommitId(ref)) {
      const found = await this.#lsRemote(remote, ref, opts);
      if (found?.commit === commit) {
        await this.#fetch(bare, remote, [`+${found.name}:${mirrorRef(found.name)}`], opts);
        if ((ref === "" || ref === "HEAD") && found.name.startsWith("refs/heads/")) {
          await runGit({
            args: ["symbolic-ref", "HEAD", mirrorRef(found.name)],
            cwd: bare,
            signal: opts.signal,
            doing: `recording the default branch of ${url}`,
          });
        }
      }
    }
    if (!(await hasCommit(bare, commit, opts.signal))) {
      try {
        await this.#fetch(bare, remote, [`+${commit}:refs/buildd/commits/${commit}`], opts);
      } catch (e) {
        if ((e as GitSourceError).code === "cancelled") throw e;
        throw new GitSourceError(
          "not-found",
          `fetching commit ${commit} from ${url}: the remote does not have it or does not serve commits by id${ref ? ` (did ${JSON.stringify(ref)} move?)` : ""}: ${(e as Error).message}`,
        );
      }
    }
    if (!(await hasCommit(bare, commit, opts.signal))) {
      throw new GitSourceError(
        "not-found",
        `fetching commit ${commit} from ${url}: the remote did not send it`,
      );
    }
    // A ref per fetched commit: it survives the branch moving on and serves as a "have" later.
    await runGit({
      args: ["update-ref", `refs/buildd/commits/${commit}`, commit],
      cwd: bare,
      signal: opts.signal,
      doing: `recording commit ${commit} of ${url}`,
    });
  }

  async #fetch(bare: string, remote: string, refspecs: string[], opts: GitAccess): Promise<void> {
    const url = splitCredentials(remote).url;
    const base = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"];
    if (opts.output) base.push("--progress");
    const run = (depth: boolean) =>
      this.#withSsh(opts, (ssh) =>
        runGit(
          {
            args: [...base, ...(depth ? ["--depth=1"] : []), url, ...refspecs],
            cwd: bare,
            config: this.#authConfig(remote, opts.auth),
            secrets: this.#secrets(remote, opts.auth),
            signal: opts.signal,
            output: opts.output,
            doing: `fetching ${url}`,
          },
          ssh,
        ),
      );
    this.#stats.fetch++;
    try {
      await run(true);
    } catch (e) {
      // Dumb-HTTP servers cannot do shallow fetches; BuildKit retries without --depth too.
      if ((e as GitSourceError).code === "cancelled" || !/shallow|depth/i.test((e as Error).message)) throw e;
      await run(false);
    }
  }

  async #lsRemote(remote: string, ref: string, opts: GitAccess): Promise<RemoteRef | undefined> {
    const url = splitCredentials(remote).url;
    const { symref, patterns } = lsRemotePatterns(ref);
    this.#stats.lsRemote++;
    const out = await this.#withSsh(opts, (ssh) =>
      runGit(
        {
          args: ["ls-remote", ...(symref ? ["--symref"] : []), url, ...patterns],
          cwd: this.#tmp,
          config: this.#authConfig(remote, opts.auth),
          secrets: this.#secrets(remote, opts.auth),
          signal: opts.signal,
          doing: `looking up ${ref === "" ? "the default branch" : JSON.stringify(ref)} at ${url}`,
        },
        ssh,
      ),
    );
    return pickRemoteRef(ref, out);
  }

  /** How `.git`'s HEAD should look for `ref`: a branch, a tag, or detached. */
  async #headFor(bare: string, remote: string, commit: string, ref: string, opts: GitAccess): Promise<Head> {
    if (isCommitId(ref)) return { kind: "detached" };
    const known = await localRef(bare, ref, opts.signal);
    if (known !== undefined) return headOf(known, commit);
    // The commit came by another ref (or by id): ask the remote what this name is.
    const found = await this.#lsRemote(remote, ref, opts);
    if (found === undefined || found.commit !== commit) return { kind: "detached" };
    if (found.object !== found.commit && !(await hasObject(bare, found.object, opts.signal))) {
      await this.#fetch(bare, remote, [`+${found.name}:${mirrorRef(found.name)}`], opts);
    }
    return headOf(found, commit);
  }

  #authConfig(remote: string, auth: GitAuth | undefined): [string, string][] {
    const { url, credentials } = splitCredentials(remote);
    return authConfig(url, auth, credentials);
  }

  #secrets(remote: string, auth: GitAuth | undefined): string[] {
    return secretsOf(auth, splitCredentials(remote).credentials);
  }

  /** Runs `fn` with ssh settings; known hosts live in a temporary file for the duration. */
  async #withSsh<T>(opts: GitAccess, fn: (ssh: GitSsh) => Promise<T>): Promise<T> {
    const ssh: GitSsh = {};
    if (opts.sshAuthSock) ssh.authSock = opts.sshAuthSock;
    if (!opts.knownHosts) return fn(ssh);
    const dir = await mkdtemp(join(this.#tmp, "ssh-"));
    try {
      ssh.knownHostsFile = join(dir, "known_hosts");
      await writeFile(
        ssh.knownHostsFile,
        opts.knownHosts.endsWith("\n") ? opts.knownHosts : `${opts.knownHosts}\n`,
        {
          mode: 0o600,
        },
      );
      return await fn(ssh);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function headOf(ref: RemoteRef, commit: string): Head {
  if (ref.name.startsWith("refs/heads/"))
    return { kind: "branch", name: ref.name.slice("refs/heads/".length) };
  if (ref.name.startsWith("refs/tags/")) {
    const object = ref.commit === commit ? ref.object : commit;
    return { kind: "tag", name: ref.name.slice("refs/tags/".length), object };
  }
  return { kind: "detached" };
}

/** What the cache already knows about `ref` from earlier fetches (mirrored refs, HEAD). */
async function localRef(bare: string, ref: string, signal?: AbortSignal): Promise<RemoteRef | undefined> {
  const candidates =
    ref === "" || ref === "HEAD"
      ? []
      : ref.startsWith("refs/")
        ? [ref]
        : [`refs/heads/${ref}`, `refs/tags/${ref}`];
  if (ref === "" || ref === "HEAD") {
    const head = await runGit({
      args: ["symbolic-ref", "-q", "HEAD"],
      cwd: bare,
      signal,
      doing: "reading the cache's HEAD",
    }).catch(() => "");
    const target = head.trim();
    if (!target.startsWith("refs/buildd/heads/")) return undefined;
    candidates.push(`refs/heads/${target.slice("refs/buildd/heads/".length)}`);
  }
  for (const name of candidates) {
    const object = await revParse(bare, mirrorRef(name), signal);
    if (object === undefined) continue;
    const commit = (await revParse(bare, `${mirrorRef(name)}^{commit}`, signal)) ?? object;
    return { name, object, commit };
  }
  return undefined;
}

/** Where the cache keeps a remote ref: refs/heads/x → refs/buildd/heads/x, and so on. */
function mirrorRef(name: string): string {
  if (name === "HEAD") return "refs/buildd/remote-head";
  return `refs/buildd/${name.slice("refs/".length)}`;
}

async function revParse(bare: string, rev: string, signal?: AbortSignal): Promise<string | undefined> {
  const out = await runGit({
    args: ["rev-parse", "-q", "--verify", rev],
    cwd: bare,
    signal,
    doing: `reading ${rev}`,
  }).catch((e: GitSourceError) => {
    if (e.code === "cancelled") throw e;
    return "";
  });
  const id = out.trim();
  return isCommitId(id) ? id : undefined;
}

async function hasCommit(bare: string, commit: string, signal?: AbortSignal): Promise<boolean> {
  return hasObject(bare, `${commit}^{commit}`, signal);
}

async function hasObject(bare: string, rev: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await runGit({ args: ["cat-file", "-e", rev], cwd: bare, signal, doing: `looking for ${rev}` });
    return true;
  } catch (e) {
    if ((e as GitSourceError).code === "cancelled") throw e;
    return false;
  }
}

/** Lock files a killed git left behind would make every later fetch fail. */
async function removeStaleLocks(bare: string): Promise<void> {
  for (const name of ["shallow.lock", "packed-refs.lock", "config.lock", "HEAD.lock", "index.lock"]) {
    await rm(join(bare, name), { force: true });
  }
  const entries = await readdir(join(bare, "refs"), { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.isFile() && e.name.endsWith(".lock")) await rm(join(e.parentPath, e.name), { force: true });
  }
}

function remoteKey(url: string): string {
  return createHash("sha256").update(url).digest("hex");
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function requireEmptyDir(dir: string, doing: string): Promise<void> {
  if (!isAbsolute(dir))
    throw new GitSourceError("invalid-argument", `${doing}: target ${JSON.stringify(dir)} is not absolute`);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new GitSourceError(
      "invalid-argument",
      `${doing}: target ${dir} is not a readable directory: ${(e as Error).message}`,
    );
  }
  if (names.length > 0) throw new GitSourceError("invalid-argument", `${doing}: target ${dir} is not empty`);
}
