import assert from "node:assert/strict";
import { test } from "node:test";
import { LineSplitter, MAX_LINE_CHARS } from "./lines.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("partial lines across chunks are joined and stamped with their first chunk's time", () => {
  const sp = new LineSplitter(1);
  assert.deepEqual(sp.push(enc("ab"), 1), []);
  assert.equal(sp.peek(), "ab");
  assert.deepEqual(sp.push(enc("c\r\nde"), 2), [{ text: "abc", timestamp: 1, stream: 1 }]);
  assert.deepEqual(sp.push(enc("f\n\ng"), 3), [
    { text: "def", timestamp: 2, stream: 1 },
    { text: "", timestamp: 3, stream: 1 },
  ]);
  assert.deepEqual(sp.flush(), { text: "g", timestamp: 3, stream: 1 });
  assert.equal(sp.flush(), undefined);
});

test("a UTF-8 character cut between chunks comes out whole", () => {
  const bytes = enc("héllo wörld ✓\n");
  const sp = new LineSplitter(2);
  const out = [];
  for (let i = 0; i < bytes.length; i++) out.push(...sp.push(bytes.subarray(i, i + 1), i));
  assert.deepEqual(
    out.map((l) => l.text),
    ["héllo wörld ✓"],
  );
});

test("one huge chunk of many lines splits into exactly those lines", () => {
  const n = 100_000;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`${i}:${"é".repeat(i % 7)}`);
  const sp = new LineSplitter(1);
  const lines = sp.push(enc(parts.join("\n") + "\n"), 0);
  assert.equal(lines.length, n);
  assert.equal(lines[0]!.text, "0:");
  assert.equal(lines[n - 1]!.text, parts[n - 1]);
  assert.equal(sp.flush(), undefined);
});

test("a line without end is broken at MAX_LINE_CHARS instead of growing without bound", () => {
  const sp = new LineSplitter(1);
  const chunk = enc("x".repeat(10_000));
  const out = [];
  for (let i = 0; i < 20; i++) out.push(...sp.push(chunk, i));
  assert.equal(out.length, Math.floor(200_000 / MAX_LINE_CHARS));
  assert.ok(out.every((l) => l.text.length === MAX_LINE_CHARS));
  assert.equal(sp.flush()!.text.length, 200_000 - out.length * MAX_LINE_CHARS);
});
