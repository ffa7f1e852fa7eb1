// Worker filters and the WorkerSet: ops go to the worker their constraints name, results cross
// between workers by a copy made once. Real workers: the runc one and the containerd one.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import type { ImmutableRef } from "../cache/types.ts";
import type { State } from "../llb/index.ts";
import { withMounted } from "../snapshot/index.ts";
import { CacheRecords } from "../solver/records.ts";
import { type Job, Solver } from "../solver/solver.ts";
import { openTestWorker, stopTestContainerd } from "../worker/testing.ts";
import { parseWorkerFilters, WorkerSet } from "./workers.ts";

const facts = (labels: Record<string, string>) => ({
  id: "w1",
  labels,
  platforms: [{ os: "linux", architecture: "amd64" }],
});

test("worker filters: labels with dotted keys, ids, platforms; items ORed, selectors ANDed", () => {
  const ctd = facts({ "org.mobyproject.buildkit.worker.executor": "containerd", "a.b": "x,y" });
  const match = (f: string[]) => parseWorkerFilters(f)(ctd);
  assert.ok(match([]));
  assert.ok(match(['labels."org.mobyproject.buildkit.worker.executor"==containerd']));
  assert.ok(!match(['labels."org.mobyproject.buildkit.worker.executor"==oci']));
  assert.ok(match(['labels."org.mobyproject.buildkit.worker.executor"!=oci']));
  assert.ok(match(['labels."org.mobyproject.buildkit.worker.executor"~=^contain']));
  assert.ok(match(['labels."a.b"=="x,y"']), "a quoted value may hold commas");
  assert.ok(match(["id==w1,platforms==linux/amd64"]));
  assert.ok(!match(["id==w1,platforms==linux/arm64"]), "selectors in one item are ANDed");
  assert.ok(match(["id==w2", "id==w1"]), "items are ORed");
  assert.ok(match(['labels."a.b"']), "a field alone asks for its presence");
  assert.ok(!match(["labels.missing"]));
  assert.throws(() => parseWorkerFilters(['labels."unterminated==x']), /parsing worker filter/);
});

describe("a worker set of the runc and the containerd worker", () => {
  after(() => stopTestContainerd());

  test("ops run where their constraints say; inputs cross once; no match is a clear error", async (t) => {
    // Each build's job holds its result until the end of the test (before the workers close).
    const jobs: Job[] = [];
    t.after(() => {
      for (const j of jobs) j.discard();
    });
    const oci = await openTestWorker(t, { kind: "oci" });
    const ctd = await openTestWorker(t, { kind: "containerd" });
    const set = new WorkerSet([oci.worker, ctd.worker]);
    const db = new DatabaseSync(":memory:");
    t.after(() => db.close());
    const solver = new Solver({ worker: set, records: new CacheRecords(db) });
    const solve = async (s: State): Promise<ImmutableRef> => {
      const job = solver.newJob({ id: `j-${jobs.length}` });
      jobs.push(job);
      return (await job.solve(s.marshal().bytes)) as ImmutableRef;
    };
    const read = (w: typeof oci, r: ImmutableRef, path: string) =>
      r.mount({ readonly: true }).then((ms) =>
        withMounted(ms, (d) => readFile(join(d, path), "utf8"), {
          readonly: true,
          base: w.worker.mountRoot,
        }),
      );
    const base = oci.stateOf(await oci.busybox());
    const onCtd = ['labels."org.mobyproject.buildkit.worker.executor"==containerd'];

    const aState = base.run({ shell: "echo on-containerd > /where", workerConstraints: onCtd }).root();
    const a = await solve(aState);
    assert.ok(
      ctd.cache.exists(a.id) && !oci.cache.exists(a.id),
      "the constrained step's result is containerd's",
    );
    assert.equal(await read(ctd, a, "where"), "on-containerd\n");
    const copies = (await ctd.cache.du()).filter((u) => u.description.startsWith("copy of"));
    assert.equal(copies.length, 1, "the busybox input was copied into the containerd worker once");

    const b = await solve(base.run({ shell: "echo default > /where2", workerConstraints: onCtd }).root());
    assert.equal(await read(ctd, b, "where2"), "default\n");
    assert.equal(
      (await ctd.cache.du()).filter((u) => u.description.startsWith("copy of")).length,
      1,
      "a second step on the same input reuses the copy",
    );

    const c = await solve(base.run({ shell: "echo runc > /where" }).root());
    assert.ok(oci.cache.exists(c.id), "an unconstrained step runs on the default worker");
    // A step on the default worker reading a containerd result: copied back.
    const d = await solve(
      base
        .run({ shell: "cat /in/where > /out", mounts: [{ dest: "/in", from: aState, readonly: true }] })
        .root(),
    );
    assert.equal(await read(oci, d, "out"), "on-containerd\n");

    await assert.rejects(
      solve(base.run({ shell: "true", workerConstraints: ["id==nope"] }).root()),
      /no worker matches its constraints \["id==nope"\]; workers: test \(.*\); test-containerd \(/,
    );
  });
});
