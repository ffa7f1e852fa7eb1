// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// RUN: command forms, heredoc scripts, mounts of every type, network, security, proxies.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CacheSharingOpt, MountType, NetMode, SecurityMode } from "../../../proto/gen/pb/ops_pb.ts";
import { convert, execOf, fileOf } from "./testing.ts";

test("shell form runs through /bin/sh -c (or SHELL); exec form runs as is", async () => {
  const r = await convert(
    'FROM busybox\nRUN echo "$HOME" && ls\nRUN ["ls", "-l"]\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN a | b\n',
  );
  assert.deepEqual(execOf(r.ops[1]!).meta!.args, ["/bin/sh", "-c", 'echo "$HOME" && ls']);
  assert.deepEqual(execOf(r.ops[2]!).meta!.args, ["ls", "-l"]);
  assert.deepEqual(execOf(r.ops[3]!).meta!.args, ["/bin/bash", "-eo", "pipefail", "-c", "a | b"]);
  assert.equal(r.ops[1]!.meta!.description["com.docker.dockerfile.v1.command"], 'RUN echo "$HOME" && ls');
  assert.equal(r.ops[1]!.name, '[2/4] RUN echo "$HOME" && ls', "quotes and unset variables show as written");
});

test("progress names show set variables expanded and secret env values masked", async () => {
  const r = await convert(
    "FROM busybox\nARG VERSION=1.2\nENV DIR=/opt\nRUN --mount=type=secret,id=tok,env=TOKEN echo $VERSION ${DIR} $TOKEN $NOPE\n",
  );
  // As in BuildKit, a RUN with mounts counts an implicit source stage, so the stage is named.
  assert.equal(
    r.ops[1]!.name,
    "[stage-0 2/2] RUN --mount=type=secret,id=tok,env=TOKEN echo 1.2 /opt **** $NOPE",
  );
});

test("heredoc scripts: fed to the shell, or run as a file when they start with #!", async () => {
  const r = await convert(
    "FROM busybox\nRUN <<-EOF\n\techo one\n\techo two\n\tEOF\nRUN <<EOT\n#!/usr/bin/env python3\nprint('hi')\nEOT\nRUN cat <<A <<B > /out\nalpha\nA\nbeta\nB\n",
  );
  const [, first, second, third] = r.ops.filter((o) => o.op.op.case === "exec" || o.name?.startsWith("[1"));
  assert.deepEqual(execOf(first!).meta!.args, ["/bin/sh", "-c", "echo one\necho two\n"]);
  assert.equal(first!.name, "[2/4] RUN <<-EOF (echo one...)");
  const script = execOf(second!);
  // The shell runs the file, so its #! line picks the interpreter.
  assert.deepEqual(script.meta!.args, ["/bin/sh", "-c", "/dev/pipes/EOT"]);
  const pipes = script.mounts.find((m) => m.dest === "/dev/pipes/")!;
  assert.equal(pipes.readonly, true);
  assert.equal(pipes.selector, "/");
  const doc = r.byDigest.get(second!.op.inputs[Number(pipes.input)]!.digest)!;
  assert.equal(doc.name, "[internal] preparing inline document");
  const mk = fileOf(doc)[0]!.action;
  assert.equal(mk.case, "mkfile");
  assert.equal(
    mk.case === "mkfile" && new TextDecoder().decode(mk.value.data),
    "#!/usr/bin/env python3\nprint('hi')\n",
  );
  assert.equal(mk.case === "mkfile" && mk.value.mode, 0o755);
  assert.deepEqual(execOf(third!).meta!.args, ["/bin/sh", "-c", "cat <<A <<B > /out\nalpha\nA\nbeta\nB"]);
  assert.equal(
    r.history.at(-1)!.created_by,
    "RUN /bin/sh -c cat <<A <<B > /out\nalpha\nA\nbeta\nB # buildkit",
  );
});

test("--mount types map to LLB mounts with their options", async () => {
  const r = await convert(
    [
      "FROM golang AS deps",
      "RUN go mod download",
      "FROM golang",
      "WORKDIR /src",
      "RUN --mount=type=cache,target=/root/.cache/go-build,id=gobuild,sharing=locked \\",
      "    --mount=type=cache,target=cache2,mode=0700,uid=1000,gid=1000 \\",
      "    --mount=type=bind,from=deps,source=/go/pkg,target=/go/pkg \\",
      "    --mount=type=bind,target=.,rw \\",
      "    --mount=type=tmpfs,target=/tmp,size=64m \\",
      "    --mount=type=secret,id=npmrc,target=/root/.npmrc,required,mode=0440 \\",
      "    --mount=type=secret,id=aws \\",
      "    --mount=type=ssh \\",
      "    --mount=type=ssh,id=github,target=/sock,uid=5 \\",
      "    go build ./...",
    ].join("\n"),
  );
  const run = r.named(/RUN --mount=type=cache/);
  const e = execOf(run);
  const byDest = new Map(e.mounts.map((m) => [m.dest, m]));
  assert.deepEqual(
    e.mounts.map((m) => m.dest),
    [
      "/",
      "/go/pkg",
      "/root/.cache/go-build",
      "/src",
      "/src/cache2",
      "/tmp",
      "/root/.npmrc",
      "/run/secrets/aws",
      "/run/buildkit/ssh_agent.0",
      "/sock",
    ],
  );
  const cache = byDest.get("/root/.cache/go-build")!;
  assert.equal(cache.mountType, MountType.CACHE);
  assert.equal(cache.cacheOpt!.ID, "/gobuild");
  assert.equal(cache.cacheOpt!.sharing, CacheSharingOpt.LOCKED);
  assert.equal(cache.input, -1n, "a cache mount without from starts empty");
  const cache2 = byDest.get("/src/cache2")!;
  assert.equal(cache2.cacheOpt!.ID, "/cache2", "the id defaults to the target as written");
  assert.equal(cache2.selector, "/cache");
  const perms = r.byDigest.get(run.op.inputs[Number(cache2.input)]!.digest)!;
  assert.equal(perms.name, "[internal] settings cache mount permissions");
  const mk = fileOf(perms)[0]!.action;
  assert.ok(mk.case === "mkdir" && mk.value.mode === 0o700 && mk.value.owner?.user?.user.value === 1000);
  const fromDeps = byDest.get("/go/pkg")!;
  assert.equal(fromDeps.selector, "/go/pkg");
  assert.equal(fromDeps.readonly, true);
  assert.equal(
    r.byDigest.get(run.op.inputs[Number(fromDeps.input)]!.digest)!.name,
    "[deps 2/2] RUN go mod download",
  );
  const ctx = byDest.get("/src")!;
  assert.equal(ctx.readonly, false);
  assert.equal(ctx.output, -1n, "a writable bind mount's changes are discarded");
  assert.equal(
    r.byDigest.get(run.op.inputs[Number(ctx.input)]!.digest)!.name,
    "[internal] load build context",
  );
  const tmp = byDest.get("/tmp")!;
  assert.equal(tmp.mountType, MountType.TMPFS);
  assert.equal(tmp.TmpfsOpt!.size, 64n * 1024n * 1024n);
  const npmrc = byDest.get("/root/.npmrc")!;
  assert.equal(npmrc.mountType, MountType.SECRET);
  assert.deepEqual(
    [npmrc.secretOpt!.ID, npmrc.secretOpt!.optional, npmrc.secretOpt!.mode],
    ["npmrc", false, 0o440],
  );
  assert.deepEqual(
    [byDest.get("/run/secrets/aws")!.secretOpt!.ID, byDest.get("/run/secrets/aws")!.secretOpt!.optional],
    ["aws", true],
  );
  const ssh = byDest.get("/run/buildkit/ssh_agent.0")!;
  assert.deepEqual([ssh.mountType, ssh.SSHOpt!.ID, ssh.SSHOpt!.optional], [MountType.SSH, "default", true]);
  assert.deepEqual(
    [byDest.get("/sock")!.SSHOpt!.ID, byDest.get("/sock")!.SSHOpt!.uid, byDest.get("/sock")!.SSHOpt!.mode],
    ["github", 5, 0o600],
  );
  assert.ok(e.meta!.env.includes("SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"));
  assert.ok(run.meta!.caps["exec.mount.bind.readwrite-nooutput"]);
});

test("a secret can be an environment variable instead of a file", async () => {
  const e = execOf(
    (await convert("FROM busybox\nRUN --mount=type=secret,id=token,env=TOKEN make\n")).ops[1]!,
  );
  assert.deepEqual(
    e.secretenv.map((s) => [s.ID, s.name, s.optional]),
    [["token", "TOKEN", true]],
  );
  assert.equal(e.mounts.length, 1, "no file mount");
});

test("mount options are expanded with the stage's variables", async () => {
  const r = await convert(
    "FROM busybox\nARG CACHE=/var/cache/apk\nRUN --mount=type=cache,target=$CACHE,id=apk-${CACHE##*/} apk add x\n",
  );
  const m = execOf(r.ops[1]!).mounts.find((x) => x.mountType === MountType.CACHE)!;
  assert.equal(m.dest, "/var/cache/apk");
  assert.equal(m.cacheOpt!.ID, "/apk-apk");
  await assert.rejects(
    convert("FROM busybox\nARG T=nfs\nRUN --mount=type=$T,target=/x true\n"),
    /Dockerfile:3: unsupported mount type "nfs"/,
  );
});

test("network and security modes, extra hosts, proxies, no-cache", async () => {
  const r = await convert(
    "FROM busybox AS a\nRUN --network=none a\nRUN --network=host b\nRUN --network=default c\nRUN --security=insecure d\n",
    {
      addHosts: [{ host: "db", ip: "10.0.0.2" }],
      buildArgs: { HTTP_PROXY: "http://proxy:3128", no_proxy: "localhost" },
      noCache: ["a"],
    },
  );
  const [, a, b, c, d] = r.ops.map((o) => (o.op.op.case === "exec" ? o : undefined));
  assert.equal(execOf(a!).network, NetMode.NONE);
  assert.equal(execOf(b!).network, NetMode.HOST);
  assert.equal(execOf(c!).network, NetMode.UNSET);
  assert.equal(execOf(d!).security, SecurityMode.INSECURE);
  assert.deepEqual(
    execOf(a!).meta!.extraHosts.map((h) => [h.Host, h.IP]),
    [["db", "10.0.0.2"]],
  );
  assert.equal(execOf(a!).meta!.proxyEnv!.httpProxy, "http://proxy:3128");
  assert.equal(execOf(a!).meta!.proxyEnv!.noProxy, "localhost");
  assert.equal(a!.meta!.ignoreCache, true);
  const cached = await convert("FROM busybox AS a\nRUN a\n", { noCache: ["other"] });
  assert.equal(cached.ops[1]!.meta!.ignoreCache, false);
  await assert.rejects(
    convert("FROM busybox\nARG N=bridge\nRUN --network=$N x\n"),
    /unsupported network mode "bridge"/,
  );
});
