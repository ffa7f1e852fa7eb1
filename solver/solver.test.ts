import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { copy, local, type State, scratch } from "../llb/index.ts";
import { emptyStatus, type SolveStatus } from "../progress/types.ts";
import { MemWorker } from "./memworker.test-util.ts";
import { CacheRecords } from "./records.ts";
import type { WorkerRef } from "../worker/types.ts";
import { type Job, SolveError, Solver } from "./solver.ts";

const run = (s: State, ...args: string[]) => s.run({ args }).root();

function setup(opts: { maxParallelism?: number; db?: DatabaseSync; worker?: MemWorker } = {}) {
  const worker = opts.worker ?? new MemWorker();
  worker.locals.set("ctx", { "/src/a": "A", "/src/b": "B", "/README": "readme" });
  const solver = new Solver({
    worker,
    records: new CacheRecords(opts.db ?? new DatabaseSync(":memory:")),
    maxParallelism: opts.maxParallelism ?? 8,
  });
  return { worker, solver };
}

async function collect(job: Job): Promise<SolveStatus> {
  const all = emptyStatus();
  for await (const s of job.progress.subscribe()) {
    all.vertexes.push(...s.vertexes);
    all.logs.push(...s.logs);
  }
  return all;
}

/** The final state of each vertex name in a progress stream. */
function finalStates(s: SolveStatus): Map<string, { cached?: boolean; error?: string; completed?: number }> {
  const m = new Map<string, { cached?: boolean; error?: string; completed?: number }>();
  for (const v of s.vertexes) m.set(v.name, { ...m.get(v.name), ...v });
  return m;
}

async function build(solver: Solver, s: State, opts: { noCache?: boolean; signal?: AbortSignal } = {}) {
  const job = solver.newJob({ id: `job${Math.random()}`, ...opts });
  const progress = collect(job);
  try {
    const ref = await job.solve(s.marshal().bytes);
    const files = ref ? new Map((solver.worker as MemWorker).files(ref)) : undefined;
    return { files, job, progress };
  } finally {
    job.discard();
  }
}

test("shared sub-graphs run once; results and progress are right", async () => {
  const { worker, solver } = setup();
  const base = run(local("ctx"), "write", "/shared", "s");
  const left = run(base, "write", "/l", "1");
  const top = run(left, "write", "/t", "2");
  const { files, progress } = await build(solver, top);
  assert.equal(files?.get("/shared"), "s");
  assert.equal(files?.get("/t"), "2");
  assert.equal(files?.get("/src/a"), "A");
  assert.deepEqual([...worker.execCount.values()], [1, 1, 1]);
  const states = finalStates(await progress);
  assert.equal(states.get("exec write /t 2")?.cached, false);
  assert.ok(states.get("exec write /t 2")?.completed);
  assert.equal(worker.openHandles(), 0, "every handle released after discard");
  assert.equal(solver.activeVertices, 0);
});

test("a second build is fully cached: nothing runs and every step shows CACHED", async () => {
  const { worker, solver } = setup();
  const g = run(run(local("ctx"), "write", "/a", "1"), "write", "/b", "2");
  await build(solver, g);
  const { files, progress } = await build(solver, g);
  assert.equal(files?.get("/b"), "2");
  assert.deepEqual([...worker.execCount.values()], [1, 1], "no exec ran again");
  const states = finalStates(await progress);
  assert.equal(states.get("exec write /b 2")?.cached, true);
  assert.equal(states.get("exec write /a 1")?.cached, true, "ancestors of a cache hit are shown cached");
});

test("--no-cache and ignore_cache run steps again", async () => {
  const { worker, solver } = setup();
  const g = run(local("ctx"), "write", "/a", "1");
  await build(solver, g);
  await build(solver, g, { noCache: true });
  assert.deepEqual([...worker.execCount.values()], [2]);
  const ignored = local("ctx")
    .run({ args: ["write", "/x", "y"], ignoreCache: true })
    .root();
  await build(solver, ignored);
  await build(solver, ignored);
  assert.equal(worker.execCount.get([...worker.execCount.keys()][1]!), 2);
});

test("the cache survives a restart: records persist in SQLite", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "buildd-solver-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const worker = new MemWorker();
  const g = run(local("ctx"), "write", "/a", "1");
  {
    const db = new DatabaseSync(join(dir, "db"));
    await build(setup({ db, worker }).solver, g);
    db.close();
  }
  const db = new DatabaseSync(join(dir, "db"));
  t.after(() => db.close());
  await build(setup({ db, worker }).solver, g);
  assert.deepEqual([...worker.execCount.values()], [1]);
  // A record whose result was pruned is dropped and the step runs again.
  worker.store.clear();
  await build(setup({ db, worker }).solver, g);
  assert.deepEqual([...worker.execCount.values()], [2]);
});

test("a copy's key follows only the files it reads", async () => {
  const { worker, solver } = setup();
  const g = (ctx: State) => run(scratch().file(copy(ctx, "/src", "/app")), "write", "/built", "yes");
  await build(solver, g(local("ctx")));
  worker.locals.set("ctx", { "/src/a": "A", "/src/b": "B", "/README": "changed readme" });
  await build(solver, g(local("ctx")));
  assert.deepEqual(
    [...worker.execCount.values()],
    [1],
    "unrelated change: the step after the copy is cached",
  );
  worker.locals.set("ctx", { "/src/a": "A2", "/src/b": "B", "/README": "changed readme" });
  const { files } = await build(solver, g(local("ctx")));
  assert.equal(files?.get("/app/src/a"), "A2");
  assert.deepEqual([...worker.execCount.values()], [2], "a copied file changed: the step runs again");
});

test("independent branches run in parallel, bounded by max parallelism", async () => {
  const { worker, solver } = setup({ maxParallelism: 3 });
  const branches = Array.from({ length: 8 }, (_, i) => run(local("ctx"), "sleep", String(30 + i)));
  // A file op that copies from every branch needs them all.
  let top = scratch();
  for (const [i, b] of branches.entries()) top = top.file(copy(b, "/src/a", `/b${i}`));
  await build(solver, top);
  assert.equal(worker.spans.length, 8);
  // Sweep over start/end events: the most execs running at one instant.
  const events = worker.spans.flatMap((s) => [
    [s.start, 1],
    [s.end, -1],
  ]);
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let running = 0;
  let maxConcurrent = 0;
  for (const [, d] of events) {
    running += d!;
    maxConcurrent = Math.max(maxConcurrent, running);
  }
  assert.ok(maxConcurrent >= 2, `branches overlapped (max ${maxConcurrent} at once)`);
  assert.ok(maxConcurrent <= 3, `never more than 3 at once, saw ${maxConcurrent}`);
});

test("ten concurrent builds of one graph run each step once", async () => {
  const { worker, solver } = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  worker.gate = () => gate;
  const g = run(run(local("ctx"), "write", "/a", "1"), "write", "/b", "2");
  const builds = Array.from({ length: 10 }, () => build(solver, g));
  setTimeout(release, 50);
  const results = await Promise.all(builds);
  assert.ok(results.every((r) => r.files?.get("/b") === "2"));
  assert.deepEqual([...worker.execCount.values()], [1, 1]);
  assert.equal(worker.openHandles(), 0);
});

test("cancelling one of two builds sharing a step keeps the step running for the other", async () => {
  const { worker, solver } = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const seen: AbortSignal[] = [];
  worker.gate = (_args, signal) => {
    seen.push(signal);
    return gate;
  };
  const g = run(local("ctx"), "write", "/a", "1");
  const ac = new AbortController();
  const a = build(solver, g, { signal: ac.signal });
  const b = build(solver, g);
  await new Promise((r) => setTimeout(r, 20));
  ac.abort(new Error("client went away"));
  await assert.rejects(a, /client went away/);
  assert.equal(seen[0]?.aborted, false, "the shared step was not cancelled");
  release();
  assert.equal((await b).files?.get("/a"), "1");
  assert.equal(worker.openHandles(), 0);
});

test("cancelling the only build aborts its running step", async () => {
  const { worker, solver } = setup();
  const seen: AbortSignal[] = [];
  worker.gate = (_args, signal) => {
    seen.push(signal);
    return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
  };
  const ac = new AbortController();
  const a = build(solver, run(local("ctx"), "write", "/a", "1"), { signal: ac.signal });
  await new Promise((r) => setTimeout(r, 20));
  ac.abort(new Error("cancelled by user"));
  await assert.rejects(a, /cancelled by user/);
  assert.equal(seen[0]?.aborted, true);
  assert.equal(solver.activeVertices, 0);
});

test("a failing step fails every build that needs it with the same error", async () => {
  const { worker, solver } = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  worker.gate = () => gate;
  const g = run(run(local("ctx"), "fail", "boom"), "write", "/never", "x");
  const builds = [build(solver, g), build(solver, g)];
  setTimeout(release, 20);
  const errors = await Promise.allSettled(builds);
  const reasons = errors.map((e) => (e.status === "rejected" ? e.reason : undefined));
  assert.ok(reasons.every((r) => r instanceof SolveError));
  assert.equal(reasons[0], reasons[1], "one error object shared");
  const err = reasons[0] as SolveError;
  assert.match(err.message, /did not complete successfully: exit code: 1/);
  assert.equal(err.vertex.name, "exec fail boom");
  assert.deepEqual(err.logTail, ["about to fail", "boom"]);
  assert.equal(worker.execCount.size, 1, "the step after the failure never ran");
  // A later build retries instead of inheriting the old failure.
  worker.gate = undefined;
  await assert.rejects(build(solver, g), SolveError);
  assert.equal([...worker.execCount.values()][0], 2);
});

test("nested solves in one job share the cache and the progress stream", async () => {
  const { worker, solver } = setup();
  const job = solver.newJob({ id: "nested" });
  const progress = collect(job);
  const inner = run(local("ctx"), "write", "/inner", "1");
  const r1 = await job.solve(inner.marshal().bytes);
  const r2 = await job.solve(run(inner, "write", "/outer", "2").marshal().bytes);
  assert.equal(worker.files(r1!).get("/inner"), "1");
  assert.equal(worker.files(r2!).get("/outer"), "2");
  assert.equal(worker.execCount.size, 2);
  job.discard();
  const names = [...finalStates(await progress).keys()];
  assert.ok(names.includes("exec write /inner 1") && names.includes("exec write /outer 2"));
  assert.equal(worker.openHandles(), 0);
});

test("an empty definition solves to no result", async () => {
  const { solver } = setup();
  const job = solver.newJob({ id: "empty" });
  assert.equal(await job.solve(scratch().marshal().bytes), undefined);
  job.discard();
});

test("an imported cache is asked only for keys without a local record, and its hit becomes one", async () => {
  const { worker, solver } = setup();
  const step1 = run(scratch(), "write", "/a", "1");
  const step2 = run(step1, "write", "/b", "2");
  // A first build records both steps; their keys and results are what an export lists.
  const job = solver.newJob({ id: "first" });
  const ref = await job.solve(step2.marshal().bytes);
  assert.ok(ref);
  const exported = await job.exportable();
  assert.equal(exported.length, 2);
  assert.deepEqual(
    exported.map((e) => e.inputs.length),
    [0, 1],
  );
  assert.equal(exported[1]!.inputs[0]!.key, exported[0]!.key, "inputs come before the steps that use them");
  const [key1, key2] = exported.map((e) => e.key);
  for (const e of exported) for (const r of e.refs) await r.release();
  job.discard();

  // The local record wins: the remote cache is not even asked.
  const asked: string[] = [];
  const remote = (answer: (key: string) => WorkerRef[] | undefined) => ({
    load: async (key: string, _outputs: number, ctx: { hit(): void }) => {
      asked.push(key);
      const refs = answer(key);
      if (refs) ctx.hit();
      return refs;
    },
  });
  const warm = solver.newJob({ id: "warm" });
  warm.remoteCache = remote(() => {
    throw new Error("a local record must win");
  });
  await warm.solve(step2.marshal().bytes);
  warm.discard();
  assert.deepEqual(asked, []);

  // Without the local record of step 2, its key is asked; the answer is recorded locally.
  solver.records.deleteKey(key2!);
  const other = [...worker.execCount.values()].reduce((a, b) => a + b, 0);
  const job3 = solver.newJob({ id: "remote" });
  const step1Ref = await worker.loadRef(solver.records.get(key1!, 1)![0]!);
  job3.remoteCache = remote((key) => (key === key2 ? [step1Ref!.clone()] : undefined));
  const got = await job3.solve(step2.marshal().bytes);
  assert.deepEqual(asked, [key2]);
  assert.equal(worker.files(got!).get("/b"), undefined, "the imported result was used as it is");
  assert.equal(
    [...worker.execCount.values()].reduce((a, b) => a + b, 0),
    other,
    "nothing ran",
  );
  assert.ok(solver.records.get(key2!, 1), "the hit is now a local record");
  job3.discard();
  await step1Ref!.release();
});
