import assert from "node:assert/strict";
import { test } from "node:test";
import { KeyedLock } from "./keyed-lock.ts";

test("KeyedLock serializes one key and runs different keys in parallel", async () => {
  const lock = new KeyedLock();
  const events: string[] = [];
  const gate = Promise.withResolvers<void>();
  const a1 = lock.run("a", async () => {
    events.push("a1 start");
    await gate.promise;
    events.push("a1 end");
  });
  const a2 = lock.run("a", async () => {
    events.push("a2");
  });
  const b = lock.run("b", async () => {
    events.push("b");
  });
  await b;
  assert.deepEqual(events, ["a1 start", "b"], "b did not wait for a; a2 waits for a1");
  assert.ok(lock.busy("a"));
  gate.resolve();
  await Promise.all([a1, a2]);
  assert.deepEqual(events, ["a1 start", "b", "a1 end", "a2"]);
  assert.equal(lock.busy("a"), false);
});

test("KeyedLock: a failing holder releases the key, an aborted waiter leaves the queue", async () => {
  const lock = new KeyedLock();
  await assert.rejects(
    lock.run("k", async () => {
      throw new Error("boom");
    }),
    /boom/,
  );
  const gate = Promise.withResolvers<void>();
  const holder = lock.run("k", () => gate.promise);
  const controller = new AbortController();
  const waiter = lock.run("k", async () => "ran", controller.signal);
  controller.abort(new Error("gave up"));
  await assert.rejects(waiter, /gave up/);
  let third = false;
  const next = lock.run("k", async () => {
    third = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(third, false, "the holder still has the key");
  gate.resolve();
  await Promise.all([holder, next]);
  assert.equal(third, true);
});
