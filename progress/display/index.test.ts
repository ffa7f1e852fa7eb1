import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import {
  CapturedOutput,
  NAMES,
  scriptedBuild,
  streamOf,
  T0,
  TEST_ERROR,
} from "../scripted-build.test-util.ts";
import { display, isDisplayMode, resolveDisplayMode } from "./index.ts";

test("auto picks tty on a terminal and plain elsewhere; TERM=dumb always gets plain", () => {
  const tty = new CapturedOutput({ isTTY: true, columns: 80, rows: 24 });
  const pipe = new CapturedOutput();
  assert.equal(resolveDisplayMode("auto", tty, {}), "tty");
  assert.equal(resolveDisplayMode("auto", pipe, {}), "plain");
  assert.equal(resolveDisplayMode("auto", tty, { TERM: "dumb" }), "plain");
  assert.equal(resolveDisplayMode("tty", tty, { TERM: "dumb" }), "plain");
  assert.equal(resolveDisplayMode("tty", pipe, {}), "tty");
  assert.equal(resolveDisplayMode("rawjson", tty, {}), "rawjson");
  assert.equal(resolveDisplayMode("quiet", tty, { TERM: "dumb" }), "quiet");
  assert.ok(isDisplayMode("plain"));
  assert.ok(!isDisplayMode("fancy"));
});

test("display() runs the chosen display and returns the same summary in every mode", async () => {
  const texts = new Map<string, string>();
  for (const mode of ["auto", "plain", "tty", "rawjson", "quiet"] as const) {
    const out = new CapturedOutput({ isTTY: mode === "tty", columns: 80, rows: 24 });
    let now = T0;
    const summary = await display(
      mode,
      streamOf(scriptedBuild(), (at) => {
        now = at;
      }),
      out,
      { clock: () => now, env: {} },
    );
    texts.set(mode, out.text);
    assert.equal(summary.steps, 5, mode);
    assert.equal(summary.cached, 1, mode);
    assert.equal(summary.done, 2, mode);
    assert.equal(summary.errored, 1, mode);
    assert.equal(summary.failed?.name, NAMES.test, mode);
    assert.deepEqual(
      summary.failed?.logTail,
      ["running tests", "FAIL: test_parse (expected 2, got 3)"],
      mode,
    );
  }
  assert.equal(texts.get("auto"), texts.get("plain"));
  assert.ok(texts.get("tty")!.includes("\x1b[?25l"));
  assert.ok(texts.get("rawjson")!.startsWith('{"vertexes":'));
});

test("quiet prints nothing but the failure", async () => {
  const out = new CapturedOutput();
  await display("quiet", streamOf(scriptedBuild()), out);
  assert.equal(
    out.text,
    [
      "------",
      ` > ${NAMES.test}:`,
      "0.400 running tests",
      "1.600 FAIL: test_parse (expected 2, got 3)",
      "------",
      `ERROR: ${TEST_ERROR}`,
      "",
    ].join("\n"),
  );
  const ok = new CapturedOutput();
  await display("quiet", streamOf(scriptedBuild().slice(0, 8)), ok);
  assert.equal(ok.text, "");
});

test("a slow output is waited for, and one that goes away does not hang the display", async () => {
  const chunks: string[] = [];
  const slow = new Writable({
    highWaterMark: 16,
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      setImmediate(cb);
    },
  });
  const expected = new CapturedOutput();
  await display("plain", streamOf(scriptedBuild()), expected);
  await display("plain", streamOf(scriptedBuild()), slow);
  assert.equal(chunks.join(""), expected.text);

  const gone = new Writable({
    highWaterMark: 1,
    write(_chunk, _enc, cb) {
      cb(new Error("EPIPE"));
    },
  });
  gone.on("error", () => {}); // as a CLI would, to exit quietly when its reader goes away
  const summary = await display("plain", streamOf(scriptedBuild()), gone);
  assert.equal(summary.errored, 1, "the stream was still followed to its end");
});
