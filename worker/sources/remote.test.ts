// git and http sources end to end through the solver, against loopback servers.
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { git, http } from "../../llb/index.ts";
import { makeGitRepo, startGitDaemon } from "../../test/git.ts";
import { startHttpServer } from "../../test/http.ts";
import { digestOf } from "../../util/digest.ts";
import { forEachWorker } from "../testing.ts";

forEachWorker((open) => {
  test("a git source checks out a branch, and follows it when it moves", async (t) => {
    const repo = await makeGitRepo([
      { files: { "README.md": "v1\n", "src/app.txt": "app\n" }, branch: "main" },
    ]);
    t.after(repo.cleanup);
    const daemon = await startGitDaemon(dirname(repo.dir), { signal: t.signal });
    const url = daemon.url(repo.dir.split("/").pop()!);
    const w = await open(t);
    const first = await w.build(git(url, "main"));
    await first.read(async (dir) => {
      assert.equal(await readFile(join(dir, "README.md"), "utf8"), "v1\n");
      await assert.rejects(stat(join(dir, ".git")), /ENOENT/);
    });
    const again = await w.build(git(url, "main"));
    assert.equal(again.ref?.id, first.ref?.id, "same commit: the checkout is cached");
    await makeGitRepo(repo.dir, [{ files: { "README.md": "v2\n" }, branch: "main" }]);
    const moved = await w.build(git(url, "main"));
    await moved.read(async (dir) => assert.equal(await readFile(join(dir, "README.md"), "utf8"), "v2\n"));
    await assert.rejects(w.build(git(url, "no-such-branch")), /git ref "no-such-branch" not found/);
  });

  test("an http source downloads once, verified, with its mode", async (t) => {
    const body = "#!/bin/sh\necho hi\n";
    const server = await startHttpServer(
      { "/tool.sh": { body, headers: { etag: '"v1"' } } },
      { signal: t.signal },
    );
    const w = await open(t);
    const src = http(`${server.url}/tool.sh`, { checksum: digestOf(body), chmod: 0o755 });
    const r = await w.build(src);
    await r.read(async (dir) => {
      assert.equal(await readFile(join(dir, "tool.sh"), "utf8"), body);
      assert.equal((await stat(join(dir, "tool.sh"))).mode & 0o777, 0o755);
    });
    server.resetStats();
    await w.build(src);
    assert.equal(server.stats()["/tool.sh"]?.requests ?? 0, 0, "a known checksum needs no request");
    await assert.rejects(
      w.build(http(`${server.url}/tool.sh`, { checksum: digestOf("other") })),
      /checksum mismatch/,
    );
  });
});
