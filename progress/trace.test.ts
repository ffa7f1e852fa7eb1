import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LAYER, NAMES, scriptedBuild, streamOf, T0, TEST_ERROR, V } from "./scripted-build.test-util.ts";
import { type TraceEvent, type TraceFile, TraceRecorder } from "./trace.ts";
import { emptyStatus } from "./types.ts";

/** The structural rules of the Trace Event Format that Perfetto and chrome://tracing rely on. */
function validate(file: TraceFile): void {
  assert.ok(Array.isArray(file.traceEvents));
  for (const e of file.traceEvents) {
    assert.equal(typeof e.name, "string");
    assert.ok(["X", "i", "C", "M"].includes(e.ph), `phase ${e.ph}`);
    for (const k of ["ts", "pid", "tid"] as const)
      assert.ok(Number.isInteger(e[k]) && e[k] >= 0, `${k} of ${e.name}`);
    if (e.ph === "X") assert.ok(Number.isInteger(e.dur) && e.dur! >= 0, `dur of ${e.name}`);
    if (e.ph === "M" && e.name === "thread_sort_index") assert.ok(Number.isInteger(e.args?.sort_index));
    else if (e.ph === "M") assert.equal(typeof e.args?.name, "string", `${e.name} has a name`);
    if (e.ph === "C") for (const v of Object.values(e.args ?? {})) assert.equal(typeof v, "number");
    if (e.ph === "i") assert.ok(["t", "p", "g"].includes(e.s!));
  }
  // Slices on one track must nest or be disjoint, never partly overlap.
  const byTrack = Map.groupBy(
    file.traceEvents.filter((e) => e.ph === "X"),
    (e) => `${e.pid}/${e.tid}`,
  );
  for (const [track, slices] of byTrack) {
    for (const a of slices) {
      for (const b of slices) {
        if (a === b) continue;
        const partial = a.ts < b.ts && b.ts < a.ts + a.dur! && a.ts + a.dur! < b.ts + b.dur!;
        assert.ok(!partial, `${a.name} and ${b.name} partly overlap on track ${track}`);
      }
    }
  }
}

async function recorded(opts: ConstructorParameters<typeof TraceRecorder>[0] = {}): Promise<TraceFile> {
  const rec = new TraceRecorder(opts);
  for await (const _ of rec.tap(streamOf(scriptedBuild()))) {
    // a display would consume the batches here
  }
  return rec.toJSON();
}

const slices = (f: TraceFile) => f.traceEvents.filter((e) => e.ph === "X");
const named = (f: TraceFile, name: string) => slices(f).find((e) => e.name === name)!;

test("every started step is one complete event with its timing, digest, cache state and error", async () => {
  const f = await recorded();
  validate(f);
  assert.deepEqual(
    slices(f).map((e) => e.name),
    [NAMES.context, NAMES.pull, NAMES.make, NAMES.test],
  );
  const make = named(f, NAMES.make);
  assert.equal(make.ts, 995_000);
  assert.equal(make.dur, 1_500_000);
  assert.deepEqual(make.args, { digest: V.make, cached: false, inputs: [V.context, V.pull] });
  assert.equal(named(f, NAMES.context).cat, "cached");
  assert.equal(named(f, NAMES.context).args?.cached, true);
  assert.equal(named(f, NAMES.test).args?.error, TEST_ERROR);
  assert.equal(f.otherData.startTime, new Date(T0 + 5).toISOString());
});

test("lanes: steps that ran in parallel get different tracks, each named", async () => {
  const f = await recorded();
  const make = named(f, NAMES.make);
  const tst = named(f, NAMES.test);
  assert.notEqual(make.tid, tst.tid);
  assert.equal(named(f, NAMES.pull).tid, named(f, NAMES.context).tid, "sequential steps share a lane");
  const threadNames = new Map(
    f.traceEvents.filter((e) => e.ph === "M" && e.name === "thread_name").map((e) => [e.tid, e.args?.name]),
  );
  for (const s of slices(f)) assert.ok(threadNames.has(s.tid), `track ${s.tid} is named`);
  assert.ok(f.traceEvents.some((e) => e.ph === "M" && e.name === "process_name"));
});

test("steps mode: one track per step, named after it", async () => {
  const f = await recorded({ tracks: "steps" });
  validate(f);
  const tids = slices(f).map((e) => e.tid);
  assert.equal(new Set(tids).size, tids.length);
  const names = f.traceEvents.filter((e) => e.name === "thread_name").map((e) => e.args?.name);
  assert.ok(names.includes(NAMES.make));
});

test("byte counters, output and warnings are events on the right tracks", async () => {
  const f = await recorded();
  const counters = f.traceEvents.filter((e) => e.ph === "C");
  assert.deepEqual(
    counters.map((e) => [e.name, e.args?.bytes]),
    [
      [LAYER, 0],
      [LAYER, 1_050_000],
      [LAYER, 1_060_000],
      [LAYER, 2_100_000],
    ],
  );
  const logs = f.traceEvents.filter((e) => e.cat === "log");
  const make = named(f, NAMES.make);
  const makeLogs = logs.filter((e) => e.tid === make.tid).map((e) => e.args?.text);
  assert.deepEqual(makeLogs, [
    "compiling a.c\ncompil",
    "ing b.c\n",
    "warning: unused variable\n",
    "linking\ndone",
  ]);
  const fail = logs.find((e) => String(e.args?.text).startsWith("FAIL"))!;
  assert.equal(fail.tid, named(f, NAMES.test).tid);
  assert.equal(fail.ts, 2_595_000);
  const warning = f.traceEvents.find((e) => e.cat === "warning")!;
  assert.equal(warning.name, "WARNING: RUN uses a deprecated flag");
  assert.equal(warning.tid, make.tid);
});

test("output is capped per event and per step, with a marker where it was cut", () => {
  const rec = new TraceRecorder({ maxLogCharsPerEvent: 10, maxLogCharsPerStep: 100 });
  rec.add({ ...emptyStatus(), vertexes: [{ digest: "v", inputs: [], name: "RUN", started: T0 }] });
  for (let i = 0; i < 50; i++) {
    const data = new TextEncoder().encode("y".repeat(30));
    rec.add({ ...emptyStatus(), logs: [{ vertex: "v", stream: 1, data, timestamp: T0 + i }] });
  }
  const logs = rec.toJSON().traceEvents.filter((e: TraceEvent) => e.cat === "log");
  const texts = logs.map((e) => String(e.args?.text));
  assert.ok(texts[0]!.startsWith("yyyyyyyyyy\n[20 more characters"));
  assert.match(texts[texts.length - 1]!, /not traced past 100 characters/);
  assert.ok(logs.length < 10);
});

test("an unfinished step ends at the last time seen and is marked incomplete", () => {
  const rec = new TraceRecorder();
  rec.add({ ...emptyStatus(), vertexes: [{ digest: "v", inputs: [], name: "RUN", started: T0 }] });
  rec.add({
    ...emptyStatus(),
    logs: [{ vertex: "v", stream: 1, data: new TextEncoder().encode("x"), timestamp: T0 + 250 }],
  });
  const f = rec.toJSON();
  validate(f);
  const s = f.traceEvents.find((e) => e.ph === "X")!;
  assert.equal(s.dur, 250_000);
  assert.equal(s.args?.incomplete, true);
});

test("the file written is the JSON a trace viewer opens, and no temporary file is left", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "buildd-trace-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const rec = new TraceRecorder();
  for await (const _ of rec.tap(streamOf(scriptedBuild()))) {
    // consume
  }
  const path = join(dir, "trace.json");
  await rec.writeFile(path);
  const parsed = JSON.parse(await readFile(path, "utf8")) as TraceFile;
  validate(parsed);
  assert.equal(parsed.displayTimeUnit, "ms");
  assert.equal(slices(parsed).length, 4);
  assert.deepEqual(await readdir(dir), ["trace.json"]);
  await assert.rejects(
    rec.writeFile(join(dir, "missing", "trace.json")),
    /writing the build trace to .*missing/,
  );
});
