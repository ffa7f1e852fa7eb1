import assert from "node:assert/strict";
import { test } from "node:test";
import { OutputTail } from "./outputtail.ts";

test("the tail keeps the last lines within its byte bound", () => {
  const tail = new OutputTail(64);
  for (let i = 0; i < 100; i++) tail.push(Buffer.from(`line ${i}\n`));
  assert.deepEqual(tail.lines(3), ["line 97", "line 98", "line 99"]);
  assert.ok(tail.lines(100).length < 10);
  const big = new OutputTail(16);
  big.push(Buffer.from("x".repeat(1000) + "\nend\n"));
  assert.deepEqual(big.lines(), ["end"]);
  const one = new OutputTail();
  one.push(Buffer.from("partial "));
  one.push(Buffer.from("line\r\nnext"));
  assert.deepEqual(one.lines(), ["partial line", "next"]);
});
