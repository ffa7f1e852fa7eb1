import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CapturedOutput,
  NAMES,
  scriptedBuild,
  streamOf,
  T0,
  TEST_ERROR,
} from "../scripted-build.test-util.ts";
import { emptyStatus, type SolveStatus } from "../types.ts";
import { renderFrame } from "./frame.ts";
import { ProgressState } from "./state.ts";
import { displayWidth, stripAnsi } from "./text.ts";
import { displayTTY } from "./tty.ts";
import { VirtualTerminal } from "./vt.test-util.ts";

/** Runs the scripted build on a fake terminal, redrawing on every batch; returns what it shows. */
async function onTerminal(columns: number, rows: number, batches = scriptedBuild()) {
  const out = new CapturedOutput({ isTTY: true, columns, rows });
  let now = T0;
  const summary = await displayTTY(
    streamOf(batches, (at) => {
      now = at;
    }),
    out,
    { clock: () => now, redrawIntervalMs: 0 },
  );
  const vt = new VirtualTerminal(columns, rows);
  const last = out.chunks.findLastIndex((c) => c.includes("[+] Building"));
  for (const c of out.chunks.slice(0, last)) vt.write(c);
  const beforeFinal = vt.transcript();
  vt.reset();
  // The display ends where the cursor is shown again; what follows is plain report text.
  const end = out.chunks.findIndex((c) => c.includes("\x1b[?25h"));
  assert.ok(end >= 0, "the cursor is shown again at the end");
  for (const c of out.chunks.slice(0, end + 1)) vt.write(c);
  const display = { wrapped: vt.wrapped, clampedUp: vt.clampedUp, lines: vt.transcript() };
  for (const c of out.chunks.slice(end + 1)) vt.write(c);
  return { out, summary, display, beforeFinal, transcript: vt.transcript() };
}

test("the final frame replaces every earlier one and the failure follows it", async () => {
  const { display, transcript, out, summary } = await onTerminal(80, 30);
  assert.ok(out.chunks.length > 5, "frames were redrawn in place");
  assert.deepEqual(display.lines, [
    "[+] Building 2.7s (4/5) ERROR",
    " => CACHED [internal] load build context                                   0.0s",
    " => [1/3] FROM docker.io/library/busybox:latest                            0.9s",
    " => => sha256:8a0af6c18a0af6c18a0af6c18a0af6c18a0af6c18a0a 2.10MB / 2.10MB 0.9s",
    " => [2/3] RUN make                                                         1.5s",
    " => ERROR [3/3] RUN ./test.sh                                              1.7s",
  ]);
  assert.equal(display.wrapped, 0);
  assert.equal(display.clampedUp, 0);
  const rest = transcript.slice(display.lines.length).join("\n");
  assert.ok(
    rest.includes(
      `------\n > ${NAMES.test}:\n0.400 running tests\n1.600 FAIL: test_parse (expected 2, got 3)\n------\nERROR: process`,
    ),
    rest,
  );
  assert.ok(rest.includes("WARNING: RUN uses a deprecated flag"));
  assert.equal(summary.failed?.error, TEST_ERROR);
});

test("a narrow terminal never wraps a line of the display", async () => {
  for (const columns of [40, 20, 12, 5]) {
    const { display } = await onTerminal(columns, 30);
    assert.equal(display.wrapped, 0, `${columns} columns`);
    assert.equal(display.clampedUp, 0, `${columns} columns`);
    for (const l of display.lines)
      assert.ok(displayWidth(l) < columns, `${JSON.stringify(l)} fits ${columns}`);
    assert.equal(display.lines.length, 6);
  }
});

test("a short terminal gets frames that fit, so the cursor never has to leave the screen", async () => {
  for (const rows of [3, 5, 8]) {
    const { display } = await onTerminal(60, rows);
    assert.equal(display.clampedUp, 0, `${rows} rows`);
    assert.equal(display.lines[0], "[+] Building 2.7s (4/5) ERROR");
  }
});

test("running steps show their last output lines, dimmed, beneath them", () => {
  const state = new ProgressState();
  for (const b of scriptedBuild().slice(0, 7)) state.apply(b.status);
  const frame = renderFrame(state, {
    now: T0 + 1500,
    width: 60,
    height: 30,
    final: false,
    color: true,
    phase: "Building",
    runningLogLines: 2,
  });
  assert.deepEqual(frame.map(stripAnsi), [
    "[+] Building 1.5s (2/5)",
    " => CACHED [internal] load build context               0.0s",
    " => [1/3] FROM docker.io/library/busybox:latest        0.9s",
    " => => sha256:8a0af6c18a0af6c18a0af6c1 2.10MB / 2.10MB 0.9s",
    " => [2/3] RUN make                                     0.5s",
    " => => # compiling b.c",
    " => => # warning: unused variable",
    " => [3/3] RUN ./test.sh                                0.5s",
    " => => # running tests",
  ]);
  assert.equal(frame[5], "\x1b[2m => => # compiling b.c\x1b[0m");
});

test("output with escape sequences cannot move the cursor inside the display", async () => {
  const status = (s: Partial<SolveStatus>) => ({ at: T0, status: { ...emptyStatus(), ...s } });
  const evil = "\x1b[2J\x1b[Hclear\x1b]0;title\x07 \x1b[10Aup\rover\n";
  const { display, out } = await onTerminal(40, 10, [
    status({ vertexes: [{ digest: "v", inputs: [], name: "RUN \x1b[31mred\ttab", started: T0 }] }),
    status({ logs: [{ vertex: "v", stream: 1, data: new TextEncoder().encode(evil), timestamp: T0 }] }),
    status({ vertexes: [{ digest: "v", inputs: [], name: "RUN x", started: T0, completed: T0 + 100 }] }),
  ]);
  assert.equal(display.clampedUp, 0);
  assert.ok(out.text.includes(" => => # over\x1b[0m"), "the log line shows what the carriage return left");
  assert.ok(out.text.includes(" => RUN red tab "), "the name lost its color codes and its tab");
  assert.deepEqual(display.lines, ["[+] Building 0.1s (1/1) FINISHED", ` => RUN x${" ".repeat(26)}0.1s`]);
});

test("a line redrawn shorter than before leaves nothing of the old one behind", async () => {
  const at = (s: Partial<SolveStatus>) => ({ at: T0, status: { ...emptyStatus(), ...s } });
  const log = (text: string) =>
    at({ logs: [{ vertex: "v", stream: 1, data: new TextEncoder().encode(text), timestamp: T0 }] });
  const { beforeFinal } = await onTerminal(60, 20, [
    at({ vertexes: [{ digest: "v", inputs: [], name: "RUN x", started: T0 }] }),
    log("a line much longer than the ones after it\n"),
    ...Array.from({ length: 6 }, () => log("x\n")),
  ]);
  assert.deepEqual(beforeFinal.slice(2), Array(6).fill(" => => # x"));
});

test("redraws are throttled however many batches arrive", async () => {
  const batches: { at: number; status: SolveStatus }[] = [
    {
      at: T0,
      status: { ...emptyStatus(), vertexes: [{ digest: "v", inputs: [], name: "RUN x", started: T0 }] },
    },
  ];
  for (let i = 0; i < 5000; i++) {
    const data = new TextEncoder().encode(`line ${i}\n`);
    batches.push({
      at: T0,
      status: { ...emptyStatus(), logs: [{ vertex: "v", stream: 1, data, timestamp: T0 }] },
    });
  }
  const out = new CapturedOutput({ isTTY: true, columns: 80, rows: 24 });
  // The clock stands still, so no redraw interval ever passes: the first frame and the final one.
  const summary = await displayTTY(streamOf(batches), out, { clock: () => T0, redrawIntervalMs: 100 });
  const frames = out.chunks.filter((c) => c.includes("[+] Building")).length;
  assert.equal(frames, 2);
  assert.equal(summary.steps, 1);
});
