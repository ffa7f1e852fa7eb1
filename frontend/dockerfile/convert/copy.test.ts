// COPY and ADD: sources of every kind, ownership and modes, --link, and the context filter.
import assert from "node:assert/strict";
import { test } from "node:test";
import { local } from "../../../llb/index.ts";
import type { LocalContextOptions } from "./context.ts";
import { destPath } from "./dispatch-copy.ts";
import { convert, fileOf, type TestOp } from "./testing.ts";

function copies(op: TestOp) {
  return fileOf(op).map((a) => {
    if (a.action.case !== "copy") throw new Error(`not a copy: ${a.action.case}`);
    return a.action.value;
  });
}

test("COPY from the context: wildcards, directory contents, destination in the workdir", async () => {
  const r = await convert("FROM busybox\nWORKDIR /app\nCOPY src/*.go go.mod ./\nCOPY ./docs docs\n");
  const [a, b] = copies(r.named("[3/4] COPY src/*.go go.mod ./"));
  assert.deepEqual([a!.src, a!.dest, b!.src, b!.dest], ["/src/*.go", "/app/", "/go.mod", "/app/"]);
  assert.ok(
    a!.allowWildcard && a!.allowEmptyWildcard && a!.followSymlink && a!.dirCopyContents && a!.createDestPath,
  );
  assert.equal(a!.attemptUnpackDockerCompatibility, false);
  const [docs] = copies(r.named("[4/4] COPY ./docs docs"));
  assert.deepEqual([docs!.src, docs!.dest], ["/docs", "/app/docs"]);
  assert.equal(r.history.at(-2)!.created_by, "COPY src/*.go go.mod ./ # buildkit");
});

test("--chown, --chmod (octal and symbolic), --exclude, --parents", async () => {
  const r = await convert(
    [
      "FROM busybox",
      "COPY --chown=app:1000 --chmod=0750 a /a",
      "COPY --chown=root --chmod=u+x,g-w b /b",
      "COPY --exclude=*.md --exclude=.git src /src",
      "COPY --parents ./x/./y/*.txt /out/",
    ].join("\n"),
  );
  const [a] = copies(r.named(/COPY --chown=app/));
  assert.equal(a!.mode, 0o750);
  assert.deepEqual(
    a!.owner?.user?.user.value,
    { $typeName: "pb.NamedUserOpt", name: "app", input: 0n },
    "resolved in the destination",
  );
  assert.deepEqual(a!.owner?.group?.user, { case: "byID", value: 1000 });
  const [b] = copies(r.named(/COPY --chown=root/));
  assert.deepEqual([b!.mode, b!.modeStr], [-1, "u+x,g-w"]);
  assert.deepEqual(b!.owner?.user?.user, { case: "byID", value: 0 }, "root is uid 0");
  assert.deepEqual(copies(r.named(/COPY --exclude/))[0]!.excludePatterns, ["*.md", ".git"]);
  const [p] = copies(r.named(/COPY --parents/));
  assert.deepEqual([p!.src, p!.includePatterns, p!.dest], ["/x", ["y/*.txt"], "/out/"]);
  assert.deepEqual(
    r.history.map((h) => h.created_by),
    [
      "COPY --chown=app:1000 --chmod=0750 a /a # buildkit",
      "COPY --chown=root --chmod=u+x,g-w b /b # buildkit",
      "COPY src /src # buildkit",
      "COPY --parents ./x/./y/*.txt /out/ # buildkit",
    ],
  );
  await assert.rejects(
    convert("FROM busybox\nCOPY --chmod=8888 a /a\n"),
    /Dockerfile:2: invalid chmod parameter: '8888'/,
  );
  await assert.rejects(convert("FROM busybox\nCOPY --chmod=u+q a /a\n"), /invalid chmod parameter/);
});

test("--link copies onto an empty layer merged on top, in one progress group", async () => {
  const r = await convert("FROM busybox\nRUN first\nCOPY --link a /a\nRUN after\n");
  const link = r.named("[3/4] LINK COPY --link a /a");
  assert.equal(link.op.op.case, "merge");
  const [below, layer] = r.inputsOf(link);
  assert.equal(below!.name, "[2/4] RUN first");
  assert.equal(layer!.name, "[3/4] COPY --link a /a");
  assert.equal(fileOf(layer!)[0]!.input, -1n, "the copy does not see the layers below");
  assert.equal(layer!.meta!.progressGroup!.id, link.meta!.progressGroup!.id);
  assert.deepEqual([layer!.meta!.progressGroup!.weak, link.meta!.progressGroup!.weak], [true, false]);
  assert.deepEqual(
    r.inputsOf(r.named("[4/4] RUN after")).map((o) => o.name),
    ["[3/4] LINK COPY --link a /a"],
  );
  const chmod = await convert("FROM busybox\nCOPY --link --chmod=755 a /a\n");
  assert.equal(
    chmod.named(/COPY --link --chmod/).op.op.case,
    "file",
    "--chmod disables linking, as in BuildKit",
  );
});

test("ADD: URLs, git repositories, local archives", async () => {
  const sum = `sha256:${"b".repeat(64)}`;
  const r = await convert(
    [
      "FROM busybox",
      `ADD --checksum=${sum} https://example.com/dl/tool.tar.gz /opt/`,
      "ADD --keep-git-dir https://github.com/moby/buildkit.git#v0.13.0:frontend /src",
      "ADD git@github.com:moby/moby.git /moby",
      "ADD vendor.tar.gz /vendor/",
    ].join("\n"),
  );
  const dl = r.ops.find((o) => o.op.op.case === "source" && o.op.op.value.identifier.startsWith("https://"))!;
  assert.equal(dl.name, `[2/5] ADD --checksum=${sum} https://example.com/dl/tool.tar.gz /opt/`);
  assert.ok(dl.op.op.case === "source");
  assert.equal(dl.op.op.value.identifier, "https://example.com/dl/tool.tar.gz");
  assert.deepEqual(dl.op.op.value.attrs, { "http.checksum": sum, "http.filename": "tool.tar.gz" });
  const gitOp = r.ops.find(
    (o) => o.op.op.case === "source" && o.op.op.value.identifier.startsWith("git://github.com/moby/buildkit"),
  )!;
  assert.ok(gitOp.op.op.case === "source");
  assert.equal(gitOp.op.op.value.identifier, "git://github.com/moby/buildkit.git#v0.13.0:frontend");
  assert.equal(gitOp.op.op.value.attrs["git.keepgitdir"], "true");
  const ssh = r.ops.find(
    (o) => o.op.op.case === "source" && o.op.op.value.identifier.startsWith("git://github.com/moby/moby"),
  )!;
  assert.ok(ssh.op.op.case === "source" && ssh.op.op.value.attrs["git.mountsshsock"] === "default");
  const tar = copies(r.named(/ADD vendor/))[0]!;
  assert.deepEqual([tar.src, tar.attemptUnpackDockerCompatibility], ["/vendor.tar.gz", true]);
  const bad: [string, RegExp][] = [
    ["COPY https://example.com/x /x", /source can't be a URL for COPY/],
    ["COPY https://github.com/a/b.git /x", /source can't be a git ref for COPY/],
    [`ADD --checksum=${sum} a b /x/`, /checksum can't be specified for multiple sources/],
    [`ADD --checksum=${sum} local.txt /x`, /checksum can't be specified for non-HTTP\(S\) sources/],
  ];
  for (const [line, re] of bad) await assert.rejects(convert(`FROM busybox\n${line}\n`), re, line);
});

test("heredoc files in COPY, expanded unless the delimiter is quoted", async () => {
  const r = await convert(
    'FROM busybox\nENV NAME=world\nCOPY <<hello.txt <<"raw.txt" /etc/\nhello $NAME\nhello.txt\nkeep $NAME\nraw.txt\n',
  );
  const op = r.named(/COPY <<hello.txt/);
  const [one, two] = copies(op);
  assert.deepEqual([one!.src, one!.dest, two!.src], ["/hello.txt", "/etc/", "/raw.txt"]);
  const docs = r.inputsOf(op).filter((o) => o.name === "[internal] preparing inline document");
  const data = docs.map((d) => {
    const a = fileOf(d)[0]!.action;
    return a.case === "mkfile" ? new TextDecoder().decode(a.value.data) : "";
  });
  assert.deepEqual(data.sort(), ["hello world\n", "keep $NAME\n"]);
  assert.equal(r.history.at(-1)!.created_by, "COPY <<hello.txt <<raw.txt /etc/ # buildkit");
});

test("the context is filtered to the paths the build reads, and .dockerignore is applied", async () => {
  const asked: LocalContextOptions[] = [];
  const localContext = (o: LocalContextOptions) => {
    asked.push(o);
    return local(o.name, { exclude: o.exclude, followPaths: o.followPaths });
  };
  const r = await convert(
    "FROM busybox AS a\nCOPY go.mod go.sum /src/\nRUN --mount=type=bind,source=tools,target=/tools make\nFROM busybox\nCOPY --from=a /src /src\nCOPY ./cmd/ /cmd\n",
    { localContext, dockerignore: "# comment\n*.md\n!README.md\n/build/\n./dist/../out\n" },
  );
  assert.deepEqual(asked, [
    {
      name: "context",
      exclude: ["*.md", "!README.md", "build", "out"],
      followPaths: ["cmd", "go.mod", "go.sum", "tools"],
    },
  ]);
  const ctx = r.ops.find((o) => o.op.op.case === "source" && o.op.op.value.identifier === "local://context")!;
  assert.ok(ctx.op.op.case === "source");
  assert.equal(ctx.op.op.value.attrs["local.followpaths"], '["cmd","go.mod","go.sum","tools"]');
  const whole = await convert("FROM busybox\nCOPY . /src\n", { localContext });
  assert.deepEqual(asked.at(-1)!.followPaths, [], "copying the root reads everything");
  assert.ok(whole);
});

test("destinations: absolute, relative to WORKDIR, trailing slashes kept", () => {
  assert.equal(destPath("/app", "."), "/app/");
  assert.equal(destPath("/app", ""), "/app/");
  assert.equal(destPath("/app", "sub/"), "/app/sub/");
  assert.equal(destPath("/app", "../x"), "/x");
  assert.equal(destPath("/app", "/abs//dir/"), "/abs/dir/");
  assert.equal(destPath("/", "/"), "/");
  assert.equal(destPath("/app", "/x/."), "/x/.");
});
