import assert from "node:assert/strict";
import { test } from "node:test";
import { CapturedOutput, scriptedBuild, streamOf, T0, TEST_ERROR, V } from "../scripted-build.test-util.ts";
import { emptyStatus, type SolveStatus } from "../types.ts";
import { displayPlain } from "./plain.ts";

const LAYER_LINE = "#2 sha256:8a0af6c18a0af6c18a0af6c18a0af6c18a0af6c18a0af6c18a0af6c18a0af6c1";

test("plain output of a small build is exactly BuildKit-shaped", async () => {
  const out = new CapturedOutput();
  const summary = await displayPlain(streamOf(scriptedBuild()), out);
  assert.equal(
    out.text,
    [
      "#1 [internal] load build context",
      "#1 CACHED",
      "",
      "#2 [1/3] FROM docker.io/library/busybox:latest",
      `${LAYER_LINE} 0B / 2.10MB`,
      `${LAYER_LINE} 1.05MB / 2.10MB 0.5s`,
      `${LAYER_LINE} 2.10MB / 2.10MB 0.9s done`,
      "#2 DONE 0.9s",
      "",
      "#3 [2/3] RUN make",
      "#3 0.100 compiling a.c",
      "#3 ...",
      "",
      "#4 [3/3] RUN ./test.sh",
      "#4 0.400 running tests",
      "#4 ...",
      "",
      "#3 [2/3] RUN make",
      "#3 0.100 compiling b.c",
      "#3 0.300 warning: unused variable",
      "#3 1.400 linking",
      "#3 1.400 done",
      "#3 DONE 1.5s",
      "",
      "#4 [3/3] RUN ./test.sh",
      "#4 1.600 FAIL: test_parse (expected 2, got 3)",
      `#4 ERROR: ${TEST_ERROR}`,
      "",
      "------",
      " > [3/3] RUN ./test.sh:",
      "0.400 running tests",
      "1.600 FAIL: test_parse (expected 2, got 3)",
      "------",
      `ERROR: ${TEST_ERROR}`,
      "",
      "1 warning found:",
      "WARNING: RUN uses a deprecated flag (#3 [2/3] RUN make)",
      "  --security=sandbox is the default and can be dropped",
      "  More info: https://example.invalid/flags",
      "",
    ].join("\n"),
  );
  assert.deepEqual(
    { ...summary, failed: undefined, failures: undefined, warnings: undefined },
    {
      steps: 5,
      done: 2,
      cached: 1,
      errored: 1,
      canceled: 0,
      durationMs: 2695,
      failed: undefined,
      failures: undefined,
      warnings: undefined,
    },
  );
  assert.equal(summary.failed?.digest, V.test);
  assert.equal(summary.failed?.error, TEST_ERROR);
  assert.deepEqual(summary.failed?.logTail, ["running tests", "FAIL: test_parse (expected 2, got 3)"]);
  assert.equal(summary.warnings.length, 1);
});

test("plain output is the same on every run (no wall clock involved)", async () => {
  const a = new CapturedOutput();
  const b = new CapturedOutput();
  await displayPlain(streamOf(scriptedBuild()), a, { clock: () => 0 });
  await displayPlain(streamOf(scriptedBuild()), b, { clock: () => Date.now() });
  assert.equal(a.text, b.text);
});

function run(started: number, extra: Partial<SolveStatus> = {}): SolveStatus {
  return { ...emptyStatus(), vertexes: [{ digest: "v", inputs: [], name: "RUN x", started }], ...extra };
}

test("a cancelled step is reported as CANCELED, not as an error", async () => {
  const out = new CapturedOutput();
  const summary = await displayPlain(
    streamOf([
      { at: T0, status: run(T0) },
      {
        at: T0,
        status: run(T0, {
          vertexes: [
            {
              digest: "v",
              inputs: [],
              name: "RUN x",
              started: T0,
              completed: T0 + 1,
              error: "context canceled",
            },
          ],
        }),
      },
    ]),
    out,
  );
  assert.equal(out.text, "#1 RUN x\n#1 CANCELED\n");
  assert.equal(summary.canceled, 1);
  assert.equal(summary.failed, undefined);
});

test("thousands of log lines in many chunks: every line printed once, one write per batch", async () => {
  const batches: { at: number; status: SolveStatus }[] = [{ at: T0, status: run(T0) }];
  const lines = 20_000;
  let text = "";
  for (let i = 0; i < lines; i++) text += `line ${i} ${"x".repeat(i % 50)}\n`;
  // Cut the output into chunks that end mid-line, as pipes deliver it.
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length; ) {
    const end = Math.min(bytes.length, off + 997);
    batches.push({
      at: T0,
      status: {
        ...emptyStatus(),
        logs: [{ vertex: "v", stream: 1, data: bytes.subarray(off, end), timestamp: T0 + 5 }],
      },
    });
    off = end;
  }
  const out = new CapturedOutput();
  await displayPlain(streamOf(batches), out);
  const printed = out.text.split("\n").filter((l) => l.startsWith("#1 0.005 "));
  assert.equal(printed.length, lines);
  for (let i = 0; i < lines; i += 997) assert.equal(printed[i], `#1 0.005 line ${i} ${"x".repeat(i % 50)}`);
  assert.ok(
    out.chunks.length <= batches.length + 1,
    `${out.chunks.length} writes for ${batches.length} batches`,
  );
});
