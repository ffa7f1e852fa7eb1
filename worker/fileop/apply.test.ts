import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  ChownOptSchema,
  type FileAction,
  FileActionCopySchema,
  FileActionMkDirSchema,
  FileActionMkFileSchema,
  FileActionRmSchema,
  FileActionSchema,
  FileActionSymlinkSchema,
  UserOptSchema,
} from "../../proto/gen/pb/ops_pb.ts";
import { type FileActionBase, type FileActionsHost, applyFileActions } from "./apply.ts";

const userByName = (name: string, input: bigint) =>
  create(ChownOptSchema, {
    user: create(UserOptSchema, { user: { case: "byName", value: { name, input } } }),
  });

function action(
  input: bigint,
  act: FileAction["action"],
  opts: { secondaryInput?: bigint; output?: bigint } = {},
): FileAction {
  return create(FileActionSchema, {
    input,
    secondaryInput: opts.secondaryInput ?? -1n,
    output: opts.output ?? -1n,
    action: act,
  });
}

/** A host keeping every result in its own temp dir, reusing exclusive bases in place as a snapshotter would. */
async function host(
  t: TestContext,
  inputs: string[],
): Promise<{ host: FileActionsHost; calls: Array<[number, FileActionBase]> }> {
  const base = await mkdtemp(join(tmpdir(), "buildd-apply-"));
  t.after(() => rm(base, { recursive: true, force: true }));
  const calls: Array<[number, FileActionBase]> = [];
  return {
    calls,
    host: {
      numInputs: inputs.length,
      inputDir: (i) => inputs[i]!,
      prepareTarget: async (i, b) => {
        calls.push([i, b]);
        if (b.kind === "action" && b.exclusive) return b.dir;
        const dir = join(base, `result-${i}`);
        await mkdir(dir);
        if (b.kind !== "scratch") execFileSync("cp", ["-a", `${b.dir}/.`, dir]);
        return dir;
      },
    },
  };
}

async function fixtures(t: TestContext): Promise<{ rootfs: string; context: string }> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-apply-inputs-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const rootfs = join(dir, "rootfs");
  const context = join(dir, "context");
  await mkdir(join(rootfs, "etc"), { recursive: true });
  await writeFile(
    join(rootfs, "etc/passwd"),
    "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
  );
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\napp:x:1000:\n");
  await mkdir(context);
  await writeFile(join(context, "hello.txt"), "hello");
  return { rootfs, context };
}

test("actions chain through earlier results, owners come from the named input, outputs are mapped", async (t) => {
  const { rootfs, context } = await fixtures(t);
  const { host: h, calls } = await host(t, [rootfs, context]);
  const actions = [
    // 0: on the rootfs, the owner looked up in the target itself (-1).
    action(0n, {
      case: "mkdir",
      value: create(FileActionMkDirSchema, {
        path: "/app",
        mode: 0o755,
        owner: userByName("app", -1n),
        timestamp: -1n,
      }),
    }),
    // 1: onto action 0's result, a file from the context, owner looked up in input 0.
    action(
      2n,
      {
        case: "copy",
        value: create(FileActionCopySchema, {
          src: "/hello.txt",
          dest: "/app/",
          mode: -1,
          owner: userByName("app", 0n),
          timestamp: -1n,
        }),
      },
      { secondaryInput: 1n },
    ),
    // 2: onto action 1's result; the op's output 0.
    action(
      3n,
      {
        case: "mkfile",
        value: create(FileActionMkFileSchema, {
          path: "/app/conf",
          mode: 0o600,
          data: Buffer.from("c"),
          timestamp: -1n,
        }),
      },
      { output: 0n },
    ),
    // 3: on scratch; the op's output 1.
    action(
      -1n,
      {
        case: "symlink",
        value: create(FileActionSymlinkSchema, { oldpath: "target", newpath: "/link", timestamp: -1n }),
      },
      { output: 1n },
    ),
  ];
  const { results, outputs } = await applyFileActions(actions, h);
  assert.deepEqual(
    calls.map(([i, b]) => [i, b.kind, b.kind === "action" ? b.exclusive : undefined]),
    [
      [0, "input", undefined],
      [1, "action", true],
      [2, "action", true],
      [3, "scratch", undefined],
    ],
  );
  // The exclusive bases were reused in place by this host.
  assert.equal(results[0], results[2]);
  const out0 = outputs.get(0)!;
  assert.equal(await readFile(join(out0, "app/hello.txt"), "utf8"), "hello");
  assert.equal((await lstat(join(out0, "app/hello.txt"))).uid, 1000);
  assert.equal((await lstat(join(out0, "app"))).uid, 1000);
  assert.equal(await readFile(join(out0, "app/conf"), "utf8"), "c");
  assert.equal(await readlink(join(outputs.get(1)!, "link")), "target");
  // Inputs are never written.
  await assert.rejects(lstat(join(rootfs, "app")), { code: "ENOENT" });
});

test("a result read again later or that is an output is not exclusive", async (t) => {
  const { rootfs, context } = await fixtures(t);
  const { host: h, calls } = await host(t, [rootfs, context]);
  const actions = [
    action(1n, {
      case: "mkfile",
      value: create(FileActionMkFileSchema, {
        path: "/made",
        mode: 0o644,
        data: Buffer.from("m"),
        timestamp: -1n,
      }),
    }),
    // Reads action 0 as base...
    action(2n, { case: "rm", value: create(FileActionRmSchema, { path: "/hello.txt" }) }, { output: 0n }),
    // ...and action 0 again as a copy source; action 1 (an output) as base.
    action(
      3n,
      {
        case: "copy",
        value: create(FileActionCopySchema, { src: "/made", dest: "/copied", mode: -1, timestamp: -1n }),
      },
      { secondaryInput: 2n, output: 1n },
    ),
  ];
  const { outputs } = await applyFileActions(actions, h);
  assert.deepEqual(
    calls.map(([, b]) => (b.kind === "action" ? b.exclusive : b.kind)),
    ["input", false, false],
  );
  await assert.rejects(lstat(join(outputs.get(0)!, "hello.txt")), { code: "ENOENT" });
  assert.equal(await readFile(join(outputs.get(1)!, "copied"), "utf8"), "m");
  // Copying from scratch copies nothing.
  const scratchCopy = [
    action(
      0n,
      {
        case: "copy",
        value: create(FileActionCopySchema, {
          src: "/",
          dest: "/",
          mode: -1,
          dirCopyContents: true,
          timestamp: -1n,
        }),
      },
      { output: 0n },
    ),
  ];
  const r = await applyFileActions(scratchCopy, (await host(t, [context])).host);
  assert.equal(await readFile(join(r.outputs.get(0)!, "hello.txt"), "utf8"), "hello");
});

test("bad references and unknown actions are refused", async (t) => {
  const { rootfs } = await fixtures(t);
  const mk = create(FileActionMkDirSchema, { path: "/x", mode: 0o755, timestamp: -1n });
  const cases: Array<[FileAction[], RegExp]> = [
    [[action(1n, { case: "mkdir", value: mk })], /file action 0 refers to input 1/],
    [[action(-2n, { case: "mkdir", value: mk })], /out of range/],
    [
      [
        action(
          0n,
          { case: "copy", value: create(FileActionCopySchema, { src: "/", dest: "/" }) },
          { secondaryInput: 5n },
        ),
      ],
      /refers to input 5/,
    ],
    [
      [
        action(0n, {
          case: "mkdir",
          value: create(FileActionMkDirSchema, { path: "/y", owner: userByName("app", 3n) }),
        }),
      ],
      /refers to input 3/,
    ],
    [[action(0n, { case: undefined })], /has no action/],
    [
      [
        action(0n, { case: "mkdir", value: mk }, { output: 0n }),
        action(1n, { case: "rm", value: create(FileActionRmSchema, { path: "/x" }) }, { output: 0n }),
      ],
      /both produce output 0/,
    ],
  ];
  for (const [actions, error] of cases) {
    const { host: h } = await host(t, [rootfs]);
    await assert.rejects(applyFileActions(actions, h), error);
  }
});
