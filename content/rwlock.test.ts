import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { RwLock } from "./rwlock.ts";

test("shared sections overlap, an exclusive one runs alone, in arrival order", async () => {
  const lock = new RwLock();
  const events: string[] = [];
  let inside = 0;
  const section = (name: string, exclusive: boolean) =>
    (exclusive ? lock.exclusive.bind(lock) : lock.shared.bind(lock))(async () => {
      inside++;
      events.push(`${name}+${inside}`);
      if (exclusive) assert.equal(inside, 1, `${name} ran alone`);
      for (let i = 0; i < 3; i++) await nextTurn();
      inside--;
      events.push(`${name}-`);
      return name;
    });
  const results = await Promise.all([
    section("r1", false),
    section("r2", false),
    section("w1", true),
    section("r3", false),
    section("w2", true),
  ]);
  assert.deepEqual(results, ["r1", "r2", "w1", "r3", "w2"]);
  assert.deepEqual(events, ["r1+1", "r2+2", "r1-", "r2-", "w1+1", "w1-", "r3+1", "r3-", "w2+1", "w2-"]);
});

test("a failing section releases the lock", async () => {
  const lock = new RwLock();
  await assert.rejects(
    lock.exclusive(async () => assert.fail("boom")),
    /boom/,
  );
  assert.equal(await lock.shared(async () => "ok"), "ok");
  await assert.rejects(
    lock.shared(async () => assert.fail("boom")),
    /boom/,
  );
  assert.equal(await lock.exclusive(async () => "ok"), "ok");
});
