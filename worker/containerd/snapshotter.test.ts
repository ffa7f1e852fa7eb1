// The containerd snapshotter against a private containerd: leases keep what buildd holds from
// containerd's garbage collector, cleanup() repairs what a crash leaves on either side, and
// merges/diffs keep the original layers for exporters.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test, type TestContext } from "node:test";
import { withMounted } from "../../snapshot/index.ts";
import { startContainerd, type TestContainerd } from "../../test/containerd.ts";
import { ContainerdClient, isNotFound } from "./client.ts";
import { ContainerdSnapshotter, LEASE_INSTANCE_LABEL } from "./snapshotter.ts";

let ctd: TestContainerd;
before(async () => {
  ctd = await startContainerd();
});
after(() => ctd.stop());

const quiet = { info: () => {}, warn: () => {} };

async function open(t: TestContext, reuse?: { dir: string; namespace: string }) {
  const dir = reuse?.dir ?? (await mkdtemp(join(tmpdir(), "buildd-ctdsn-")));
  const namespace = reuse?.namespace ?? `sn-${randomBytes(4).toString("hex")}`;
  const client = new ContainerdClient({ address: ctd.address, namespace });
  const db = new DatabaseSync(join(dir, "metadata.db"));
  const sn = await ContainerdSnapshotter.open({ client, db, root: join(dir, "root"), log: quiet });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    sn.close();
    db.close();
    client.close();
  };
  t.after(async () => {
    close();
    if (!reuse) await rm(dir, { recursive: true, force: true });
  });
  return { sn, client, dir, namespace, close };
}

/** A committed snapshot `name` whose tree `fill` writes, prepared on `parent`. */
async function layer(
  sn: ContainerdSnapshotter,
  name: string,
  parent: string | undefined,
  fill: (dir: string) => Promise<void>,
) {
  const mounts = await sn.prepare(`${name}-active`, parent);
  await withMounted(mounts, fill, { base: tmpdir() });
  await sn.commit(name, `${name}-active`);
}

async function remoteNames(client: ContainerdClient): Promise<string[]> {
  const names: string[] = [];
  for await (const r of client.snapshots.list({ snapshotter: "overlayfs" }))
    names.push(...r.info.map((i) => i.name));
  return names.sort();
}

describe("containerd snapshotter", () => {
  test("leases keep buildd's snapshots through containerd's GC; removing them frees everything", async (t) => {
    const { sn, client } = await open(t);
    await layer(sn, "A", undefined, (d) => writeFile(join(d, "a"), "1"));
    await sn.prepare("b", "A");
    await sn.mounts("A");
    // Something nobody holds: containerd's GC must take it, which proves that the GC ran.
    await client.snapshots.prepare({ snapshotter: "overlayfs", key: "stray" });
    const { lease } = await client.leases.create({});
    await client.leases.delete({ id: lease!.id, sync: true });
    const names = await remoteNames(client);
    assert.ok(!names.includes("stray"), `containerd's GC ran: ${names.join(", ")}`);
    const prefix = `buildd/${sn.instance}/`;
    assert.deepEqual(names, [`${prefix}s/A`, `${prefix}s/b`, `${prefix}v/A`]);

    await sn.remove("b");
    await sn.remove("A");
    assert.deepEqual(await remoteNames(client), []);
    const leases = await client.leases.list({
      filters: [`labels."${LEASE_INSTANCE_LABEL}"==${sn.instance}`],
    });
    assert.deepEqual(leases.leases, [], "no lease is left");
  });

  test("cleanup repairs both sides after a crash; the instance survives a reopen", async (t) => {
    const first = await open(t);
    const { sn, client } = first;
    await layer(sn, "kept", undefined, (d) => writeFile(join(d, "k"), "k"));
    await layer(sn, "lost", undefined, (d) => writeFile(join(d, "l"), "l"));
    await layer(sn, "child", "lost", (d) => writeFile(join(d, "c"), "c"));
    const prefix = `buildd/${sn.instance}/`;
    // A crash between containerd and the record: a leased snapshot no row knows...
    const { lease } = await client.leases.create({
      id: `orphan-${randomBytes(4).toString("hex")}`,
      labels: { [LEASE_INSTANCE_LABEL]: sn.instance, "buildd.snapshot": "orphan" },
    });
    await client.snapshots.prepare(
      { snapshotter: "overlayfs", key: `${prefix}s/orphan` },
      { headers: { "containerd-lease": lease!.id } },
    );
    // ...and rows whose snapshot containerd lost (its parent went, so the child goes too).
    await client.snapshots.remove({ snapshotter: "overlayfs", key: `${prefix}s/child` });
    await client.snapshots.remove({ snapshotter: "overlayfs", key: `${prefix}s/lost` });
    first.close();

    const again = await open(t, { dir: first.dir, namespace: first.namespace });
    assert.equal(again.sn.instance, sn.instance, "the instance id is kept in the database");
    assert.deepEqual(
      again.sn.list().map((s) => s.key),
      ["kept"],
    );
    assert.deepEqual(await remoteNames(again.client), [`${prefix}s/kept`]);
    const leases = await again.client.leases.list({
      filters: [`labels."${LEASE_INSTANCE_LABEL}"==${sn.instance}`],
    });
    assert.deepEqual(
      leases.leases.map((l) => l.labels["buildd.snapshot"]),
      ["kept"],
    );
    await withMounted(
      await again.sn.mounts("kept"),
      async (d) => assert.equal(await readFile(join(d, "k"), "utf8"), "k"),
      {
        readonly: true,
        base: tmpdir(),
      },
    );
  });

  test("merges and diffs hold applied changes; their layers are the original ones", async (t) => {
    const { sn, client } = await open(t);
    await layer(sn, "base", undefined, async (d) => {
      await writeFile(join(d, "keep"), "base");
      await writeFile(join(d, "gone"), "base");
    });
    await layer(sn, "top", "base", async (d) => {
      await rm(join(d, "gone"));
      await writeFile(join(d, "new"), "top");
    });
    await layer(sn, "other", undefined, (d) => writeFile(join(d, "other"), "other"));
    await sn.diff("d", "base", "top");
    await sn.merge("m", ["other", "d"]);
    const tree = (key: string) =>
      sn
        .mounts(key)
        .then((ms) =>
          withMounted(ms, (dir) => readdir(dir).then((n) => n.sort()), { readonly: true, base: tmpdir() }),
        );
    assert.deepEqual(await tree("d"), ["new"], "a diff alone shows what it adds");
    assert.deepEqual(await tree("m"), ["new", "other"]);

    const layers = sn.layers("m");
    assert.deepEqual(
      layers.map((l) => [l.lower, l.upper]),
      [
        [undefined, "other"],
        ["base", "top"],
      ],
    );
    // Plain layers on overlayfs read their changes from containerd's own upper dir.
    const top = layers[1]!.diffDir;
    assert.ok(top, "the overlay layer has a diff dir");
    assert.deepEqual(
      (await readdir(top)).sort(),
      ["gone", "new"],
      "a whiteout for the deletion, the new file",
    );
    assert.equal(sn.diffDir("m"), undefined, "a merge has no single diff dir");

    await assert.rejects(sn.remove("top"), /depend on it/);
    for (const k of ["m", "d", "other", "top", "base"]) await sn.remove(k);
    const left = await client.snapshots
      .stat({ snapshotter: "overlayfs", key: `buildd/${sn.instance}/s/base` })
      .catch((e) => e);
    assert.ok(isNotFound(left), "removed from containerd");
  });
});
