import assert from "node:assert/strict";
import { chmod, lstat, mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { type CommitSpec, git, makeGitRepo, startGitDaemon, startGitHttpServer } from "../../test/git.ts";
import { startHttpServer } from "../../test/http.ts";
import { tempDir } from "../../test/process.ts";
import { GitFetcher } from "./fetcher.ts";

// commit 0 (tag v1, lightweight) → commit 1 (tag v2, annotated; main) → commit 2 on "feature".
const history: CommitSpec[] = [
  {
    files: {
      "README.md": "hello\n",
      "run.sh": { content: "#!/bin/sh\necho hi\n", mode: 0o755 },
      "pkg/lib/a.txt": "a\n",
      "pkg/b.txt": "b\n",
    },
    tag: "v1",
  },
  {
    files: {
      link: { symlink: "README.md" },
      "README.md": "hello again\n",
      "pkg/escape": { symlink: "/etc" },
    },
    tag: { name: "v2", message: "two" },
  },
  { branch: "feature", files: { "feature.txt": "wip\n" }, message: "on a branch" },
];

type Env = {
  base: string;
  work: string;
  fetcher: GitFetcher;
  target(name: string): Promise<string>;
};

async function setup(t: TestContext): Promise<Env> {
  const tmp = await tempDir("gitsrc");
  t.after(tmp.cleanup);
  const base = join(tmp.dir, "served");
  const work = join(tmp.dir, "work");
  await mkdir(work);
  await mkdir(base);
  const fetcher = await GitFetcher.open(join(tmp.dir, "cache"));
  return {
    base,
    work,
    fetcher,
    target: async (name) => {
      const dir = join(work, name);
      await mkdir(dir);
      return dir;
    },
  };
}

/** Every path under `dir`, sorted, with "/" after directories and "@" before symlink targets. */
async function tree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const st = await lstat(path);
    if (st.isDirectory()) out.push(`${prefix}${name}/`, ...(await tree(path, `${prefix}${name}/`)));
    else if (st.isSymbolicLink()) out.push(`${prefix}${name}@${await readlink(path)}`);
    else out.push(`${prefix}${name}`);
  }
  return out;
}

async function commitTime(repoDir: string, commit: string): Promise<number> {
  return Number(await git(["show", "-s", "--format=%ct", commit], { cwd: repoDir }));
}

describe("GitFetcher over smart HTTP", () => {
  test("resolves branches, lightweight and annotated tags, commits and the default branch", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const f = env.fetcher;
    assert.equal(await f.resolve(remote, "main"), repo.commits[1]);
    assert.equal(await f.resolve(remote, "feature"), repo.commits[2]);
    assert.equal(await f.resolve(remote, "v1"), repo.commits[0]);
    assert.equal(await f.resolve(remote, "v2"), repo.commits[1], "annotated tags are peeled");
    assert.equal(await f.resolve(remote, "refs/tags/v2"), repo.commits[1]);
    assert.equal(await f.resolve(remote, "refs/heads/main"), repo.commits[1]);
    // makeGitRepo leaves HEAD on the branch of its last commit.
    assert.equal(await f.resolve(remote, ""), repo.commits[2]);
    const before = server.log().length;
    assert.equal(await f.resolve(remote, repo.commits[0]!), repo.commits[0], "a commit id needs no network");
    assert.equal(server.log().length, before);
  });

  test("a ref the remote lacks is a clear not-found error", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    await assert.rejects(env.fetcher.resolve(remote, "nope"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "not-found");
      assert.match(e.message, new RegExp(`^git ref "nope" not found in ${remote}`));
      return true;
    });
    // "v" is a prefix of v1/v2, not a ref.
    await assert.rejects(env.fetcher.resolve(remote, "v"), /git ref "v" not found/);
    // A commit the remote does not have fails at checkout, naming the commit.
    const missing = "0123456789abcdef0123456789abcdef01234567";
    await assert.rejects(
      env.fetcher.checkout(remote, missing, missing, await env.target("missing")),
      new RegExp(`fetching commit ${missing} from ${remote}`),
    );
    await assert.rejects(
      env.fetcher.resolve(join(env.base, "project"), "main"),
      /invalid git remote .*want an https/,
      "local paths are refused",
    );
    await assert.rejects(env.fetcher.resolve(`file://${repo.dir}`, "main"), /invalid git remote/);
    await assert.rejects(env.fetcher.resolve(remote, "--upload-pack=x"), /invalid git ref/);
  });

  test("checks out a branch with git's modes and symlinks, every mtime the commit time, and no .git", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const commit = await env.fetcher.resolve(remote, "main");
    const target = await env.target("main");
    const result = await env.fetcher.checkout(remote, commit, "main", target);
    assert.equal(result.commit, repo.commits[1]);
    assert.deepEqual(await tree(target), [
      "README.md",
      "link@README.md",
      "pkg/",
      "pkg/b.txt",
      "pkg/escape@/etc",
      "pkg/lib/",
      "pkg/lib/a.txt",
      "run.sh",
    ]);
    assert.equal(await readFile(join(target, "README.md"), "utf8"), "hello again\n");
    assert.equal((await lstat(join(target, "run.sh"))).mode & 0o7777, 0o755);
    assert.equal((await lstat(join(target, "README.md"))).mode & 0o7777, 0o644);
    assert.equal((await lstat(join(target, "pkg"))).mode & 0o7777, 0o755);
    const seconds = await commitTime(repo.dir, commit);
    assert.equal(result.mtime.getTime(), seconds * 1000);
    for (const p of ["README.md", "link", "pkg", "pkg/lib/a.txt", "run.sh"]) {
      assert.equal(Math.floor((await lstat(join(target, p))).mtimeMs / 1000), seconds, p);
    }
    assert.equal(Math.floor((await lstat(target)).mtimeMs / 1000), seconds);

    // A tag and a commit: older content.
    const v1 = await env.target("v1");
    await env.fetcher.checkout(remote, await env.fetcher.resolve(remote, "v1"), "v1", v1);
    assert.deepEqual(await tree(v1), [
      "README.md",
      "pkg/",
      "pkg/b.txt",
      "pkg/lib/",
      "pkg/lib/a.txt",
      "run.sh",
    ]);
    const byId = await env.target("by-id");
    await env.fetcher.checkout(remote, repo.commits[2]!, repo.commits[2]!, byId);
    assert.equal(await readFile(join(byId, "feature.txt"), "utf8"), "wip\n");
  });

  test("checks out only a sub-directory, which cannot lead out of the repository", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const commit = repo.commits[1]!;
    const sub = await env.target("sub");
    await env.fetcher.checkout(remote, commit, "main", sub, { subdir: "pkg" });
    assert.deepEqual(await tree(sub), ["b.txt", "escape@/etc", "lib/", "lib/a.txt"]);
    const deep = await env.target("deep");
    await env.fetcher.checkout(remote, commit, "main", deep, { subdir: "/pkg/lib/" });
    assert.deepEqual(await tree(deep), ["a.txt"]);

    // pkg/escape -> /etc resolves inside the checkout, where there is no etc.
    const escapeDir = await env.target("escape");
    await assert.rejects(
      env.fetcher.checkout(remote, commit, "main", escapeDir, { subdir: "pkg/escape" }),
      /sub-directory "pkg\/escape" not found/,
    );
    assert.deepEqual(await readdir(escapeDir), [], "a failed checkout leaves the target empty");
    await assert.rejects(
      env.fetcher.checkout(remote, commit, "main", escapeDir, { subdir: "README.md" }),
      /is not a directory/,
    );
    await assert.rejects(
      env.fetcher.checkout(remote, commit, "main", escapeDir, { subdir: "pkg/../.." }),
      /must stay inside the repository/,
    );
    // keepGitDir does not apply to a sub-directory (as in BuildKit).
    const kept = await env.target("kept");
    await env.fetcher.checkout(remote, commit, "main", kept, { subdir: "pkg/lib", keepGitDir: true });
    assert.deepEqual(await tree(kept), ["a.txt"]);
  });

  test("keepGitDir leaves a self-contained .git on the branch, or detached at a tag", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const f = env.fetcher;

    const onBranch = await env.target("branch");
    await f.checkout(remote, await f.resolve(remote, "main"), "main", onBranch, { keepGitDir: true });
    const g = (dir: string, args: string[]) => git(args, { cwd: dir });
    assert.equal(await g(onBranch, ["log", "-1", "--format=%H"]), repo.commits[1]);
    assert.equal(await g(onBranch, ["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert.equal(await g(onBranch, ["status", "--porcelain"]), "");
    assert.equal(await g(onBranch, ["remote", "get-url", "origin"]), remote);
    // Self-contained: nothing borrowed from the cache, and every object is there.
    await assert.rejects(lstat(join(onBranch, ".git", "objects", "info", "alternates")));
    await g(onBranch, ["fsck", "--no-progress"]);

    const atTag = await env.target("tag");
    await f.checkout(remote, await f.resolve(remote, "v2"), "v2", atTag, { keepGitDir: true });
    await assert.rejects(g(atTag, ["symbolic-ref", "-q", "HEAD"]), "HEAD is detached at a tag");
    assert.equal(await g(atTag, ["rev-parse", "HEAD"]), repo.commits[1]);
    assert.equal(await g(atTag, ["cat-file", "-t", "v2"]), "tag", "the annotated tag object is kept");
    assert.equal(await g(atTag, ["describe"]), "v2");

    // The default branch, from a commit the cache already has: named without asking the remote.
    const byDefault = await env.target("default");
    await f.checkout(remote, await f.resolve(remote, ""), "", byDefault, { keepGitDir: true });
    assert.equal(await g(byDefault, ["symbolic-ref", "HEAD"]), "refs/heads/feature");
    const before = server.log().length;
    const again = await env.target("default-again");
    await f.checkout(remote, repo.commits[2]!, "", again, { keepGitDir: true });
    assert.equal(await g(again, ["symbolic-ref", "HEAD"]), "refs/heads/feature");
    assert.equal(server.log().length, before);

    const detached = await env.target("detached");
    await f.checkout(remote, repo.commits[0]!, repo.commits[0]!, detached, { keepGitDir: true });
    assert.equal(await g(detached, ["rev-parse", "HEAD"]), repo.commits[0]);
    await assert.rejects(g(detached, ["symbolic-ref", "-q", "HEAD"]));
  });

  test("fetches only when a commit is missing: the same commit twice needs no network", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const f = env.fetcher;

    const first = await f.resolve(remote, "main");
    await f.checkout(remote, first, "main", await env.target("1"));
    assert.equal(f.stats().fetch, 1);
    const before = server.log().length;
    await f.checkout(remote, first, "main", await env.target("2"));
    assert.equal(server.log().length, before, "no request at all for a cached commit");
    assert.equal(f.stats().fetch, 1);

    // Re-resolving asks the remote (ls-remote) but fetches nothing while main stays put.
    assert.equal(await f.resolve(remote, "main"), first);
    await f.checkout(remote, first, "main", await env.target("3"));
    assert.equal(f.stats().fetch, 1);

    // A new commit on main: the next resolve sees it and only then is there a fetch.
    await git(["checkout", "-q", "main"], { cwd: repo.dir });
    const next = await makeGitRepo(repo.dir, [{ files: { "new.txt": "new\n" } }]);
    const second = await f.resolve(remote, "main");
    assert.equal(second, next.commits[0]);
    assert.notEqual(second, first);
    const dir = await env.target("4");
    await f.checkout(remote, second, "main", dir);
    assert.equal(f.stats().fetch, 2);
    assert.equal(await readFile(join(dir, "new.txt"), "utf8"), "new\n");
    // The old commit is still served from the cache.
    const before2 = server.log().length;
    await f.checkout(remote, first, "main", await env.target("5"));
    assert.equal(server.log().length, before2);
  });

  test("concurrent checkouts of one remote share one fetch", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    await makeGitRepo(join(env.base, "other"), [{ files: { "other.txt": "other\n" } }]);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    const commit = repo.commits[1]!;
    const dirs = await Promise.all(["a", "b", "c"].map((n) => env.target(n)));
    const otherDir = await env.target("other");
    await Promise.all([
      ...dirs.map((d, i) => env.fetcher.checkout(remote, commit, "main", d, { keepGitDir: i === 0 })),
      env.fetcher.checkout(
        server.url("other"),
        await env.fetcher.resolve(server.url("other"), "main"),
        "main",
        otherDir,
      ),
    ]);
    for (const d of dirs) assert.equal(await readFile(join(d, "README.md"), "utf8"), "hello again\n");
    assert.equal(await readFile(join(otherDir, "other.txt"), "utf8"), "other\n");
    assert.equal(env.fetcher.stats().fetch, 2, "one fetch per remote");
  });

  test("a token from the session authenticates without reaching argv or the cache's files", async (t) => {
    const env = await setup(t);
    const token = "s3cr3t-t0ken-value";
    const repo = await makeGitRepo(join(env.base, "private"), history);
    const server = await startGitHttpServer(env.base, {
      auth: { username: "x-access-token", password: token },
      signal: t.signal,
    });
    const remote = server.url("private");

    // A git on PATH that logs its argv, so the test sees every command line the fetcher ran.
    const shim = join(env.work, "shim");
    await mkdir(shim);
    const argvLog = join(env.work, "argv.log");
    const realGit = join(await git(["--exec-path"]), "git");
    await writeFile(
      join(shim, "git"),
      `#!/bin/sh\nprintf '%s\\n' "git $*" >> ${argvLog}\nexec ${realGit} "$@"\n`,
    );
    await chmod(join(shim, "git"), 0o755);
    const savedPath = process.env["PATH"];
    process.env["PATH"] = `${shim}:${savedPath}`;
    t.after(() => {
      process.env["PATH"] = savedPath;
    });

    await assert.rejects(
      env.fetcher.resolve(remote, "main"),
      /git-failed|Authentication failed|could not read/i,
    );
    const commit = await env.fetcher.resolve(remote, "main", { auth: { token } });
    assert.equal(commit, repo.commits[1]);
    const dir = await env.target("private");
    await env.fetcher.checkout(remote, commit, "main", dir, { auth: { token }, keepGitDir: true });
    assert.equal(await readFile(join(dir, "README.md"), "utf8"), "hello again\n");
    // The whole header works too, and so do credentials in the URL.
    const header = `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    assert.equal(await env.fetcher.resolve(remote, "v1", { auth: { header } }), repo.commits[0]);
    assert.equal(await env.fetcher.resolve(server.urlWithCredentials("private"), "v1"), repo.commits[0]);
    await env.fetcher.checkout(
      server.urlWithCredentials("private"),
      repo.commits[2]!,
      "feature",
      await env.target("creds"),
    );

    const argv = await readFile(argvLog, "utf8");
    assert.match(argv, /git ls-remote/, "the shim saw the commands");
    assert.match(argv, /git fetch/);
    for (const secret of [token, Buffer.from(`x-access-token:${token}`).toString("base64")]) {
      assert.ok(!argv.includes(secret), "no credential in any argv");
      const leaks = await grep(env.fetcher.root, secret);
      assert.deepEqual(leaks, [], "no credential in the cache's files");
      assert.deepEqual(await grep(dir, secret), [], "no credential in the kept .git");
    }
    // The URL credentials were not kept either; only the bare URL names the cache.
    assert.equal(env.fetcher.repoDir(server.urlWithCredentials("private")), env.fetcher.repoDir(remote));
  });

  test("a cancelled fetch kills git and rejects", async (t) => {
    const env = await setup(t);
    // A server that never answers: git would wait forever.
    const silent = await startHttpServer(() => new Promise<void>(() => {}), { signal: t.signal });
    const controller = new AbortController();
    const pending = env.fetcher.resolve(`${silent.url}/repo`, "main", { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(pending, (e: Error & { code?: string }) => e.code === "cancelled");
  });

  test("recovers from what a killed run left: a half-made repository and stale locks", async (t) => {
    const env = await setup(t);
    const repo = await makeGitRepo(join(env.base, "project"), history);
    const server = await startGitHttpServer(env.base, { signal: t.signal });
    const remote = server.url("project");
    await env.fetcher.checkout(remote, repo.commits[0]!, "v1", await env.target("1"));
    const bare = env.fetcher.repoDir(remote);
    await writeFile(join(bare, "shallow.lock"), "");
    await mkdir(join(bare, "refs", "buildd", "heads"), { recursive: true });
    await writeFile(join(bare, "refs", "buildd", "heads", "main.lock"), "");
    await mkdir(join(env.fetcher.root, "repos", ".tmp-0123"));
    const reopened = await GitFetcher.open(env.fetcher.root);
    assert.deepEqual(
      (await readdir(join(env.fetcher.root, "repos"))).filter((n) => n.startsWith(".tmp-")),
      [],
    );
    const dir = await env.target("2");
    await reopened.checkout(remote, repo.commits[1]!, "main", dir);
    assert.equal(await readFile(join(dir, "README.md"), "utf8"), "hello again\n");
  });
});

describe("GitFetcher over git://", () => {
  test("checks out a branch and its submodules recursively", async (t) => {
    const env = await setup(t);
    const daemon = await startGitDaemon(env.base, { signal: t.signal });
    const inner = await makeGitRepo(join(env.base, "inner"), [{ files: { "inner.txt": "inner\n" } }]);
    const middle = await makeGitRepo(join(env.base, "middle"), [
      { files: { "middle.txt": "middle\n" }, submodules: [{ path: "deps/inner", url: daemon.url("inner") }] },
    ]);
    const top = await makeGitRepo(join(env.base, "top"), [
      { files: { "top.txt": "top\n" }, submodules: [{ path: "middle", url: "../middle" }] },
    ]);
    const remote = daemon.url("top");
    const commit = await env.fetcher.resolve(remote, "main");
    assert.equal(commit, top.commits[0]);
    const dir = await env.target("plain");
    await env.fetcher.checkout(remote, commit, "main", dir);
    assert.deepEqual(await tree(dir), [
      ".gitmodules",
      "middle/",
      "middle/.gitmodules",
      "middle/deps/",
      "middle/deps/inner/",
      "middle/deps/inner/inner.txt",
      "middle/middle.txt",
      "top.txt",
    ]);
    const kept = await env.target("kept");
    await env.fetcher.checkout(remote, commit, "main", kept, { keepGitDir: true });
    const status = await git(["submodule", "status", "--recursive"], { cwd: kept });
    assert.match(status, new RegExp(`^ ?${middle.commits[0]} middle `, "m"));
    assert.match(status, new RegExp(`^ ?${inner.commits[0]} middle/deps/inner `, "m"));
    const noSubs = await env.target("no-subs");
    await env.fetcher.checkout(remote, commit, "main", noSubs, { submodules: false });
    assert.deepEqual(await readdir(join(noSubs, "middle")), []);
  });

  test("refuses submodules on the daemon's own filesystem", async (t) => {
    const env = await setup(t);
    const daemon = await startGitDaemon(env.base, { signal: t.signal });
    const secret = await makeGitRepo(join(env.work, "host-secret"), [{ files: { "secret.txt": "s\n" } }]);
    await makeGitRepo(join(env.base, "sneaky"), [
      { files: { "a.txt": "a\n" }, submodules: [{ path: "loot", url: `file://${secret.dir}` }] },
    ]);
    const remote = daemon.url("sneaky");
    const dir = await env.target("sneaky");
    await assert.rejects(
      env.fetcher.checkout(remote, await env.fetcher.resolve(remote, "main"), "main", dir),
      /transport 'file' not allowed/,
    );
    assert.deepEqual(await readdir(dir), []);
  });
});

/** Files under `dir` whose bytes contain `needle`. */
async function grep(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    if ((await readFile(path)).includes(needle)) hits.push(path);
  }
  return hits;
}
