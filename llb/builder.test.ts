import assert from "node:assert/strict";
import { test } from "node:test";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { DefinitionSchema, OpSchema } from "../proto/gen/pb/ops_pb.ts";
import { digestOf } from "../util/digest.ts";
import {
  copy,
  diff,
  dumpJson,
  git,
  image,
  loadDefinition,
  merge,
  mkdir,
  mkfile,
  scratch,
  shlex,
  type State,
  symlink,
} from "./index.ts";

const amd64 = { os: "linux", architecture: "amd64" };

function opsOf(s: State) {
  const def = loadDefinition(s.marshal({ platform: amd64 }).bytes);
  return def.order.map((d) => def.ops.get(d)!);
}

test("states are immutable: every method returns a new state", () => {
  const base = image("busybox");
  const withEnv = base.addEnv("A", "1").dir("/src").user("app");
  assert.equal(base.getEnv("A"), undefined);
  assert.equal(base.getDir(), "/");
  assert.equal(withEnv.getEnv("A"), "1");
  assert.equal(withEnv.getDir(), "/src");
  assert.equal(withEnv.dir("sub").getDir(), "/src/sub", "relative dirs resolve against the current one");
  assert.deepEqual(withEnv.addEnv("A", "2").envList(), ["A=2"], "re-setting replaces");
  const run = withEnv.run({ args: ["true"] });
  assert.notEqual(run.root().output, base.output);
  assert.equal(base.marshal().bytes.length, image("busybox").marshal().bytes.length);
});

test("marshalling is deterministic and a shared sub-graph is written once", () => {
  const build = () => {
    const base = image("busybox").run({ shell: "echo shared > /s" }).root();
    const a = base.run({ shell: "echo a > /a", env: { Z: "1", A: "2" } }).root();
    const b = base.run({ shell: "echo b > /b" }).root();
    return merge([a, b], { description: { z: "1", a: "2" } });
  };
  const first = build().marshal({ platform: amd64 });
  const second = build().marshal({ platform: amd64 });
  assert.deepEqual(Buffer.from(first.bytes), Buffer.from(second.bytes));
  const digests = first.definition.def.map((b) => digestOf(b));
  assert.equal(new Set(digests).size, digests.length, "no op written twice");
  assert.equal(digests.length, 6, "image, shared, a, b, merge, terminal");
  // Golden digest of this graph: a change here means every cache key built on it changes.
  assert.equal(digests.at(-2), "sha256:8a30b6be81601001162aa128341471217ee811b92df460b6591835df11058332");
});

test("marshal round-trips through loadDefinition and re-encodes to the same bytes", () => {
  const s = image("busybox")
    .run({
      args: ["sh", "-c", "make"],
      mounts: [
        { type: "cache", dest: "/root/.cache", id: "c", sharing: "private" },
        { type: "tmpfs", dest: "/tmp" },
        { type: "secret", dest: "/run/secrets/s", id: "s" },
        { type: "ssh" },
      ],
      validExitCodes: [0, 1],
      proxyEnv: { httpProxy: "http://proxy:3128" },
    })
    .root()
    .file(symlink("/a", "/b").mkdir("/c", 0o700), { customName: "files" });
  const m = s.marshal({ platform: amd64 });
  const def = loadDefinition(m.bytes);
  for (const raw of def.definition.def) {
    assert.deepEqual(Buffer.from(toBinary(OpSchema, fromBinary(OpSchema, raw))), Buffer.from(raw));
  }
  assert.deepEqual(Buffer.from(toBinary(DefinitionSchema, def.definition)), Buffer.from(m.bytes));
  const dump = JSON.stringify(dumpJson(def));
  assert.match(dump, /"mountType":"CACHE"/);
  assert.match(dump, /"validExitCodes":\[0,1\]/);
  assert.match(dump, /"symlink":\{"oldpath":"\/a","newpath":"\/b"/);
  assert.match(dump, /SSH_AUTH_SOCK=\/run\/buildkit\/ssh_agent.0/);
});

test("every op type and option has a stable golden digest", () => {
  const ts = new Date("2024-01-02T03:04:05Z");
  const cases: [string, State, string][] = [
    [
      "image",
      image("busybox:1.36"),
      "sha256:6961b2143f0cbb180aff576e942c751262955b3368d81db8cda48b2905f2e117",
    ],
    [
      "git subdir",
      git("https://example.com/r.git", "main", { subdir: "pkg" }),
      "sha256:b1bc915a1b80942d924f58c1ea6390c36dc0e46be9bf36be6de3c07e5afd8cd4",
    ],
    [
      "copy chmod",
      scratch().file(copy(image("busybox"), "/bin/sh", "/sh", { mode: "u+x", timestamp: ts })),
      "sha256:74ae931f70f19b04b4eb1a96d3b546345c7b8595934ed0171e9d1974231279ee",
    ],
    [
      "mkfile owner",
      scratch().file(mkfile("f", 0o600, "x", { owner: { user: "app", group: 10 } })),
      "sha256:a3c549ffec3cb6cc4bbd3d8a2d7fdaf9451bad08d47a9e2199d0d7404a875a24",
    ],
    [
      "mkdir",
      scratch().file(mkdir("/d", 0o700, { makeParents: true })),
      "sha256:19463d2d08336f8c4914ab4d3f998d4f297c8819656ee1ff9e5cd37958b80a42",
    ],
    [
      "diff scratch lower",
      diff(scratch(), image("busybox")),
      "sha256:080724e07e20e6650eb9d380f3a0d68d9dd86f6df7b6a7d90b1b32d1d3cb7a04",
    ],
    [
      "run user+cwd",
      image("busybox")
        .dir("/w")
        .user("nobody")
        .run({ args: ["id"] })
        .root(),
      "sha256:c15966149710d40436c1c22735b68cb17fc6707f687f0b75dadf2048eabc0e7a",
    ],
  ];
  const got = cases.map(([name, s]) => [name, opsOf(s).at(-2)!.digest]);
  for (const [i, [name, , want]] of cases.entries()) {
    assert.equal(got[i]![1], want, name);
  }
  // Every case distinct: no option is silently dropped.
  assert.equal(new Set(got.map((g) => g[1])).size, cases.length);
});

test("merge and diff drop empty inputs", () => {
  const a = image("busybox");
  assert.equal(merge([scratch(), a]).output, a.output);
  assert.equal(merge([scratch(), scratch()]).output, undefined);
  assert.equal(diff(a, scratch()).output, undefined);
  const [, d] = opsOf(diff(scratch(), a));
  assert.equal(d!.op.op.case, "diff");
  if (d!.op.op.case === "diff") assert.equal(d!.op.op.value.lower?.input, -1n);
});

test("a 10,000-step chain marshals without overflowing the stack", () => {
  let s = scratch();
  for (let i = 0; i < 10_000; i++) s = s.file(mkfile(`/f${i}`, 0o644, String(i)));
  const def = loadDefinition(s.marshal({ platform: amd64 }).bytes);
  assert.equal(def.order.length, 10_001);
});

test("shlex splits like a shell without expanding", () => {
  assert.deepEqual(shlex(`sh -c "echo \\"hi\\" > /x"  'a b' c\\ d $HOME`), [
    "sh",
    "-c",
    'echo "hi" > /x',
    "a b",
    "c d",
    "$HOME",
  ]);
  assert.throws(() => shlex("echo 'open"), /unterminated/);
});

test("bad builder input is refused with a clear error", () => {
  assert.throws(() => image("UPPER/Case"), /invalid image reference/);
  assert.throws(() => image("busybox").run({}), /needs a command/);
  assert.throws(
    () =>
      image("busybox")
        .run({ args: ["true"] })
        .getMount("/nope"),
    /no writable mount/,
  );
  assert.throws(() => image("busybox").addEnv("A=B", "x"), /invalid environment variable/);
});
