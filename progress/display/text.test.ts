import assert from "node:assert/strict";
import { test } from "node:test";
import {
  cutToWidth,
  displayWidth,
  formatBytes,
  formatDuration,
  formatLogOffset,
  isCanceled,
  stripAnsi,
  terminalSafe,
} from "./text.ts";

test("bytes print as BuildKit's units package prints them", () => {
  assert.equal(formatBytes(0), "0B");
  assert.equal(formatBytes(999), "999B");
  assert.equal(formatBytes(1000), "1.00kB");
  assert.equal(formatBytes(12_345_678), "12.35MB");
  assert.equal(formatBytes(2_100_000_000), "2.10GB");
});

test("log offsets get fewer decimals as they grow; durations one decimal", () => {
  assert.equal(formatLogOffset(123), "0.123");
  assert.equal(formatLogOffset(12_345), "12.35");
  assert.equal(formatLogOffset(123_456), "123.5");
  assert.equal(formatLogOffset(-5), "0.000");
  assert.equal(formatDuration(1234), "1.2s");
  assert.equal(formatDuration(-1), "0.0s");
});

test("cancellation is told apart from failure", () => {
  assert.ok(isCanceled("context canceled"));
  assert.ok(isCanceled("build abc was cancelled"));
  assert.ok(isCanceled("This operation was aborted"));
  assert.ok(!isCanceled("exit code: 1"));
});

test("terminal-safe text has no escapes or control characters and keeps what a CR left visible", () => {
  assert.equal(terminalSafe("\x1b[31mred\x1b[0m \x1b]0;title\x07ok"), "red ok");
  assert.equal(terminalSafe("10%\r50%\r90%\r"), "90%");
  assert.equal(terminalSafe("a\tb"), "a       b");
  assert.equal(terminalSafe("bell\x07 back\x08 up\x1b[2A"), "bell back up");
  assert.equal(stripAnsi("\x1b[2m => x\x1b[0m"), " => x");
});

test("width counts columns: wide characters take two, combining marks none", () => {
  assert.equal(displayWidth("abc"), 3);
  assert.equal(displayWidth("日本"), 4);
  assert.equal(displayWidth("e\u0301"), 1);
  assert.equal(cutToWidth("日本語", 5), "日本");
  assert.equal(cutToWidth("abcdef", 3), "abc");
  assert.equal(cutToWidth("ab", 3), "ab");
});
