// Solver overhead: a 10,000-vertex graph of cheap file ops on an in-memory worker (so only the
// solver's own work is timed), cold and fully cached; and a 50-step graph on the real OCI worker
// (runc, overlay snapshots), cold vs fully cached rebuild.
//   bin/node bench/solver.ts
import { DatabaseSync } from "node:sqlite";
import type { TestContext } from "node:test";
import { local, mkfile, type State, scratch } from "../llb/index.ts";
import { MemWorker } from "../solver/memworker.test-util.ts";
import { CacheRecords } from "../solver/records.ts";
import { Solver } from "../solver/solver.ts";
import { openTestWorker } from "../worker/testing.ts";

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

async function memGraph() {
  const worker = new MemWorker();
  worker.locals.set("ctx", { "/a": "a" });
  const solver = new Solver({ worker, records: new CacheRecords(new DatabaseSync(":memory:")) });
  let s: State = local("ctx");
  for (let i = 0; i < 10_000; i++) s = s.file(mkfile(`/f${i % 50}`, 0o644, String(i)));
  const [def, marshalMs] = await time(async () => s.marshal().bytes);
  const run = async () => {
    const job = solver.newJob({ id: String(Math.random()) });
    const ref = await job.solve(def);
    void ref;
    job.discard();
  };
  const [, cold] = await time(run);
  const [, warm] = await time(run);
  console.log(
    `10,000 file ops (in-memory worker): marshal ${marshalMs.toFixed(0)} ms, cold ${cold.toFixed(0)} ms (${((cold / 10_000) * 1000).toFixed(0)} µs/vertex), fully cached ${warm.toFixed(0)} ms (${((warm / 10_000) * 1000).toFixed(0)} µs/vertex)`,
  );
}

async function realGraph() {
  const afters: (() => Promise<unknown>)[] = [];
  const t = { after: (fn: () => Promise<unknown>) => afters.push(fn) } as unknown as TestContext;
  const w = await openTestWorker(t);
  const base = w.stateOf(await w.busybox());
  let s = base;
  for (let i = 0; i < 50; i++)
    s =
      i % 2 === 0
        ? s.run({ shell: `echo ${i} > /step${i}` }).root()
        : s.file(mkfile(`/file${i}`, 0o644, String(i)));
  const [, cold] = await time(() => w.build(s));
  const [, warm] = await time(() => w.build(s));
  console.log(
    `50 steps (runc worker, 25 exec + 25 file): cold ${cold.toFixed(0)} ms, fully cached ${warm.toFixed(0)} ms = ${((warm / cold) * 100).toFixed(1)}% of cold (target < 5%)`,
  );
  for (const f of afters.reverse()) await f();
  void scratch;
}

await memGraph();
await realGraph();
