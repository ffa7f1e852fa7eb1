// SIGKILL a process using the cache at chosen points (and at random moments), reopen, and check
// that everything it reported survived and that records, snapshots, directories and mounts agree.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, type TestContext, test } from "node:test";
import { mountsUsing, withMounted } from "../snapshot/mount.ts";
import { describeMounts, describeTree, tempRoot } from "../snapshot/testing.ts";
import type { SnapshotterDriver } from "../snapshot/types.ts";
import { openTestCache } from "./testing.ts";

const CHILD = join(import.meta.dirname, "testdata", "crash-child.ts");

type Reported = {
  refs: Map<string, Record<string, string>>;
  mutables: Map<string, Record<string, string>>;
  at?: string;
};

/**
 * Runs the child until `until` matches a line it prints (or, given { refs, ms }, until `ms` after
 * its `refs`-th new ref: a moment somewhere in its next operation), then SIGKILLs it. Resolves
 * with what it reported.
 */
async function runAndKill(
  t: TestContext,
  args: { root: string; driver: SnapshotterDriver; scenario: string; crashAt?: string; seed?: number },
  until: RegExp | { refs: number; ms: number },
  reported: Reported = { refs: new Map(), mutables: new Map() },
): Promise<Reported> {
  const child: ChildProcess = spawn(process.execPath, [CHILD, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += String(d);
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const done = new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    let timer: NodeJS.Timeout | undefined;
    let newRefs = 0;
    lines.on("line", (line) => {
      const [kind, id, ...rest] = line.split(" ");
      if (kind === "REF") reported.refs.set(id!, JSON.parse(rest.join(" ")));
      if (kind === "MUTABLE") reported.mutables.set(id!, JSON.parse(rest.join(" ")));
      if (kind === "AT") reported.at = id;
      if (until instanceof RegExp) {
        if (until.test(line)) resolve();
      } else if (kind === "REF" && ++newRefs >= until.refs) {
        timer ??= setTimeout(resolve, until.ms);
      }
    });
    void exited.then((code) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`child exited (${code}) before being killed:\n${stderr}`));
    });
  });
  const deadline = sleep(120_000).then(() => {
    throw new Error(
      `child did not reach ${until instanceof RegExp ? until : JSON.stringify(until)} in time:\n${stderr}`,
    );
  });
  await Promise.race([done, deadline]);
  child.kill("SIGKILL");
  await exited;
  return reported;
}

/** Reopens the stack and checks that it is consistent and holds everything reported. */
async function reopenAndCheck(root: string, driver: SnapshotterDriver, reported: Reported) {
  const c = await openTestCache(root, { driver });
  try {
    assert.deepEqual(await mountsUsing(join(root, "snapshots")), [], "nothing is left mounted");
    for (const [id, tree] of reported.refs) {
      const ref = c.cm.get(id);
      assert.deepEqual(await describeMounts(await ref.mount()), tree, `contents of reported ref ${id}`);
      await ref.release();
    }
    for (const [key, tree] of reported.mutables) {
      const m = await c.cm.getMutableByKey(key);
      await withMounted(await m.mount(), async (d) => assert.deepEqual(await describeTree(d), tree));
      await m.release();
    }
    const records = c.cm.records.all();
    assert.deepEqual(
      records.filter((r) => r.state !== "ready" || (r.mutable && !r.persistent)).map((r) => r.id),
      [],
      "no half-made records and no unkeyed mutable refs",
    );
    assert.deepEqual(
      c.sn
        .list()
        .map((s) => s.key)
        .sort(),
      records.map((r) => r.id).sort(),
      "records and snapshots correspond one to one",
    );
    const sroot = join(root, "snapshots");
    assert.equal((await readdir(join(sroot, "s"))).length, records.length, "one directory per snapshot");
    for (const sub of ["tmp", "trash", "mnt"])
      assert.deepEqual(await readdir(join(sroot, sub)), [], `${sub}/ is empty`);
    return { records, c };
  } finally {
    await c.close();
  }
}

for (const driver of ["overlayfs", "native"] as const) {
  describe(`crash recovery on ${driver}`, () => {
    const commitPoints = [
      "mutable:recorded",
      "snapshot:staged",
      "snapshot:recorded",
      "commit:recorded",
      "snapshot:measured",
      "commit:snapshotted",
    ];
    for (const point of commitPoints) {
      test(`SIGKILL while making and committing a layer, at ${point}`, async (t) => {
        const root = await tempRoot(t, "buildd-crash-");
        const reported = await runAndKill(t, { root, driver, scenario: "commit", crashAt: point }, /^AT /);
        assert.equal(reported.at, point);
        assert.equal(reported.refs.size, 1);
        const { records } = await reopenAndCheck(root, driver, reported);
        // Once the snapshot is committed, recovery finishes the commit instead of losing it.
        assert.equal(records.length, point === "commit:snapshotted" ? 2 : 1);
        if (point === "commit:snapshotted") {
          const c = await openTestCache(root, { driver });
          t.after(c.close);
          const child = records.find((r) => !reported.refs.has(r.id))!;
          assert.equal(child.description, "child");
          const ref = c.cm.get(child.id);
          assert.deepEqual(await describeMounts(await ref.mount()), {
            f: "file 644 0:0 base",
            g: "file 644 0:0 child",
          });
          await ref.release();
        }
      });
    }

    for (const point of ["record:removed", "snapshot:unrecorded"]) {
      test(`SIGKILL while removing a record, at ${point}`, async (t) => {
        const root = await tempRoot(t, "buildd-crash-");
        const reported = await runAndKill(t, { root, driver, scenario: "remove", crashAt: point }, /^AT /);
        const { records } = await reopenAndCheck(root, driver, reported);
        assert.deepEqual(
          records.map((r) => r.id),
          [...reported.refs.keys()],
          "the record being removed is gone, its parent is not",
        );
      });
    }

    test("SIGKILL with refs held and mutable refs mounted outside the root", async (t) => {
      const root = await tempRoot(t, "buildd-crash-");
      const reported = await runAndKill(t, { root, driver, scenario: "active" }, /^READY$/);
      assert.equal((await mountsUsing(join(root, "snapshots"))).length, 2, "the child left two mounts");
      const { records } = await reopenAndCheck(root, driver, reported);
      assert.equal(records.length, 4, "three refs and the keyed mutable ref; the unkeyed one is gone");
    });

    test("SIGKILL at random moments of a busy process, three times over", async (t) => {
      const root = await tempRoot(t, "buildd-crash-");
      let reported: Reported = { refs: new Map(), mutables: new Map() };
      for (const [seed, refs, ms] of [
        [1, 3, 40],
        [2, 5, 90],
        [3, 8, 170],
      ] as const) {
        reported = await runAndKill(t, { root, driver, scenario: "random", seed }, { refs, ms }, reported);
        await reopenAndCheck(root, driver, reported);
      }
      assert.ok(reported.refs.size >= 16, `the child made ${reported.refs.size} refs`);
    });
  });
}
