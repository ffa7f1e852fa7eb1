// The displays on a real progress stream: the solver's, for a build whose last step fails.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { local, type State } from "../../llb/index.ts";
import { MemWorker } from "../../solver/memworker.test-util.ts";
import { CacheRecords } from "../../solver/records.ts";
import { Solver } from "../../solver/solver.ts";
import { CapturedOutput } from "../scripted-build.test-util.ts";
import { TraceRecorder } from "../trace.ts";
import { display } from "./index.ts";
import { VirtualTerminal } from "./vt.test-util.ts";

const run = (s: State, ...args: string[]) => s.run({ args }).root();

async function failingBuild(mode: "plain" | "tty", out: CapturedOutput, trace: TraceRecorder) {
  const worker = new MemWorker();
  worker.locals.set("ctx", { "/src/a": "A" });
  const solver = new Solver({
    worker,
    records: new CacheRecords(new DatabaseSync(":memory:")),
    maxParallelism: 4,
  });
  const g = run(run(local("ctx"), "write", "/a", "1"), "fail", "boom");
  const job = solver.newJob({ id: `job-${mode}` });
  const shown = display(mode, trace.tap(job.progress.subscribe()), out, { env: {} });
  await assert.rejects(job.solve(g.marshal().bytes), /did not complete successfully/);
  job.discard();
  return shown;
}

test("plain display of a real solve: every step numbered, the failure and its output reported", async () => {
  const out = new CapturedOutput();
  const trace = new TraceRecorder();
  const summary = await failingBuild("plain", out, trace);
  const text = out.text;
  assert.match(text, /^#1 /);
  assert.match(text, /^#\d+ \d+\.\d{3} ran write \/a 1$/m);
  assert.match(text, /^#\d+ DONE \d+\.\ds$/m);
  assert.match(text, /^#\d+ ERROR: process "fail boom" did not complete successfully: exit code: 1$/m);
  assert.match(text, /------\n > exec fail boom:\n\d\.\d{3} about to fail\n\d\.\d{3} boom\n------\n/);
  assert.equal(summary.errored, 1);
  assert.equal(summary.failed?.name, "exec fail boom");
  assert.deepEqual(summary.failed?.logTail, ["about to fail", "boom"]);
  const slices = trace.toJSON().traceEvents.filter((e) => e.ph === "X");
  assert.ok(slices.some((e) => e.name === "exec fail boom" && typeof e.args?.error === "string"));
});

test("tty display of a real solve ends on a clean final frame", async () => {
  const out = new CapturedOutput({ isTTY: true, columns: 70, rows: 20 });
  const summary = await failingBuild("tty", out, new TraceRecorder());
  const vt = new VirtualTerminal(70, 20);
  vt.write(out.text);
  const lines = vt.transcript();
  assert.match(lines[0]!, /^\[\+\] Building \d+\.\ds \(\d+\/\d+\) ERROR$/);
  assert.ok(
    lines.some((l) => /^ => ERROR exec fail boom +\d+\.\ds$/.test(l)),
    lines.join("\n"),
  );
  assert.ok(lines.includes('ERROR: process "fail boom" did not complete successfully: exit code: 1'));
  assert.equal(vt.clampedUp, 0);
  assert.equal(summary.failed?.name, "exec fail boom");
});
