import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDiskSpace, parseDuration } from "./units.ts";

test("parseDiskSpace reads bytes, SI and binary units, and percentages of the disk", () => {
  const disk = 200e9;
  assert.equal(parseDiskSpace(1234, disk), 1234);
  assert.equal(parseDiskSpace("1234", disk), 1234);
  assert.equal(parseDiskSpace("512MB", disk), 512e6);
  assert.equal(parseDiskSpace("512mb", disk), 512e6);
  assert.equal(parseDiskSpace("1.5GiB", disk), 1.5 * 2 ** 30);
  assert.equal(parseDiskSpace("10 KiB", disk), 10240);
  assert.equal(parseDiskSpace("2G", disk), 2e9);
  assert.equal(parseDiskSpace("10%", disk), 20e9);
  assert.equal(parseDiskSpace("0.5%", disk), 1e9);
  for (const bad of ["", "ten", "5XB", "-1", "150%", "1e3"]) {
    assert.throws(() => parseDiskSpace(bad, disk), /invalid disk space/, bad);
  }
  assert.throws(() => parseDiskSpace(-5, disk), /invalid disk space/);
});

test("parseDuration reads seconds and Go-style durations, plus days", () => {
  assert.equal(parseDuration(30), 30_000);
  assert.equal(parseDuration("30"), 30_000);
  assert.equal(parseDuration("48h"), 48 * 3_600_000);
  assert.equal(parseDuration("1h30m"), 90 * 60_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("60d"), 60 * 86_400_000);
  for (const bad of ["", "h", "48 hours", "1h-5m", "5w"]) {
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
  }
});
