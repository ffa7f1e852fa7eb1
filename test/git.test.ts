import assert from "node:assert/strict";
import { readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { type CommitSpec, git, makeGitRepo, startGitDaemon, startGitHttpServer } from "./git.ts";
import { tempDir } from "./process.ts";

const history: CommitSpec[] = [
  {
    files: { "README.md": "hello\n", "run.sh": { content: "#!/bin/sh\necho hi\n", mode: 0o755 } },
    tag: "v1",
  },
  {
    files: { link: { symlink: "README.md" }, "README.md": "hello again\n" },
    tag: { name: "v2", message: "two" },
  },
  { branch: "feature", files: { "run.sh": null, "feature.txt": "wip\n" }, message: "on a branch" },
];

test("makeGitRepo makes reproducible commits, tags and branches", async (t) => {
  const a = await makeGitRepo(history);
  t.after(a.cleanup);
  const b = await makeGitRepo(history);
  t.after(b.cleanup);
  assert.equal(a.commits.length, 3);
  assert.deepEqual(a.commits, b.commits);
  const g = (args: string[]) => git(args, { cwd: a.dir });
  assert.equal(await g(["rev-parse", "v1"]), a.commits[0]);
  assert.equal(await g(["cat-file", "-t", "v2"]), "tag");
  assert.equal(await g(["rev-parse", "v2^{commit}"]), a.commits[1]);
  assert.equal(await g(["rev-parse", "main"]), a.commits[1]);
  assert.equal(await g(["rev-parse", "feature"]), a.commits[2]);
  assert.equal(
    await g(["ls-tree", "main", "run.sh"]),
    `100755 blob ${await g(["rev-parse", "main:run.sh"])}\trun.sh`,
  );
  assert.match(await g(["ls-tree", "main", "link"]), /^120000 /);
  assert.equal(await g(["ls-tree", "feature", "run.sh"]), "");
});

test("git daemon serves clones and tags over git://", async (t) => {
  const base = await tempDir("git-base");
  t.after(base.cleanup);
  const repo = await makeGitRepo(join(base.dir, "project"), history);
  const daemon = await startGitDaemon(base.dir);
  t.after(daemon.stop);

  const refs = await git(["ls-remote", "--tags", daemon.url("project")]);
  assert.match(refs, new RegExp(`^${repo.commits[0]}\trefs/tags/v1$`, "m"));
  assert.match(refs, /refs\/tags\/v2\^\{\}$/m);
  const clone = join(base.dir, "clone");
  await git(["clone", "-q", "--branch", "v1", daemon.url("project"), clone]);
  assert.equal(await readFile(join(clone, "README.md"), "utf8"), "hello\n");
  assert.equal((await stat(join(clone, "run.sh"))).mode & 0o111, 0o111);
  await assert.rejects(git(["ls-remote", daemon.url("missing")]));
});

test("smart HTTP serves clones, with basic auth when asked", async (t) => {
  const base = await tempDir("git-base");
  t.after(base.cleanup);
  const repo = await makeGitRepo(join(base.dir, "project"), history);
  const open = await startGitHttpServer(base.dir);
  t.after(open.stop);
  const clone = join(base.dir, "clone");
  await git(["clone", "-q", open.url("project"), clone]);
  assert.equal(await readlink(join(clone, "link")), "README.md");
  // The served HEAD is where the last commit was made: the feature branch.
  assert.equal(await git(["rev-parse", "HEAD"], { cwd: clone }), repo.commits[2]);
  assert.ok((open.stats()["/project/info/refs"]?.requests ?? 0) >= 1);

  const guarded = await startGitHttpServer(base.dir, { auth: { username: "bob", password: "pw" } });
  t.after(guarded.stop);
  await assert.rejects(git(["ls-remote", guarded.url("project")]), /Authentication failed|could not read/);
  const refs = await git(["ls-remote", guarded.urlWithCredentials("project"), "refs/heads/feature"]);
  assert.equal(refs, `${repo.commits[2]}\trefs/heads/feature`);
  assert.ok((guarded.stats()["/project/info/refs"]?.statuses[401] ?? 0) >= 1);
});

test("makeGitRepo adds submodules that clone recursively", async (t) => {
  const base = await tempDir("git-base");
  t.after(base.cleanup);
  const lib = await makeGitRepo(join(base.dir, "lib"), [
    { files: { "lib.txt": "v1\n" } },
    { files: { "lib.txt": "v2\n" } },
  ]);
  const daemon = await startGitDaemon(base.dir);
  t.after(daemon.stop);
  const app = await makeGitRepo(join(base.dir, "app"), [
    {
      files: { "main.txt": "app\n" },
      submodules: [{ path: "vendor/lib", url: daemon.url("lib"), commit: lib.commits[0] }],
    },
  ]);
  assert.equal(await git(["rev-parse", "HEAD:vendor/lib"], { cwd: app.dir }), lib.commits[0]);
  const clone = join(base.dir, "clone");
  await git(["clone", "-q", "--recurse-submodules", daemon.url("app"), clone]);
  assert.equal(await readFile(join(clone, "vendor/lib/lib.txt"), "utf8"), "v1\n");
});
