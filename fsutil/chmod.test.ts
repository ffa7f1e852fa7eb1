import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseModeString } from "./chmod.ts";

describe("parseModeString applies chmod(1) mode strings (BSD, umask 0)", () => {
  // mode string, start mode, is a directory, want.
  const cases: Array<[string, number, boolean, number]> = [
    ["644", 0o4777, false, 0o644],
    ["0755", 0o600, true, 0o755],
    ["4755", 0o600, false, 0o4755],
    ["u+x", 0o644, false, 0o744],
    ["u+x,g-w", 0o664, false, 0o744],
    ["go-w", 0o666, false, 0o644],
    ["a+r", 0o000, false, 0o444],
    ["+x", 0o644, false, 0o755],
    ["-x", 0o755, true, 0o644],
    ["u=rwx,go=rx", 0o000, false, 0o755],
    ["u=rwx,go=u-w", 0o000, false, 0o755],
    ["go=", 0o777, false, 0o700],
    ["go=u-w", 0o700, false, 0o755],
    ["u=g", 0o750, false, 0o550],
    ["g+u", 0o700, false, 0o770],
    ["o-g", 0o077, false, 0o070],
    ["u+r-w", 0o600, false, 0o400],
    ["=rw,+X", 0o644, false, 0o666],
    ["=rw,+X", 0o744, false, 0o777],
    ["=rw,+X", 0o600, true, 0o777],
    ["+X", 0o644, false, 0o644],
    ["+X", 0o644, true, 0o755],
    ["+X", 0o744, false, 0o755],
    ["a=rX", 0o600, true, 0o444],
    ["u+s", 0o755, false, 0o4755],
    ["g+s", 0o755, true, 0o2755],
    ["u-s", 0o4755, false, 0o755],
    ["o+s", 0o755, false, 0o755],
    ["+t", 0o755, true, 0o1755],
    ["o+t", 0o755, true, 0o755],
    ["=", 0o4755, false, 0o000],
    ["=", 0o1755, true, 0o1000],
    ["a=rwx", 0o4000, false, 0o777],
    ["ug+rw,o-rwx", 0o007, false, 0o660],
  ];
  for (const [s, from, isDir, want] of cases) {
    test(`${JSON.stringify(s)} on ${from.toString(8)}${isDir ? " (dir)" : ""} gives ${want.toString(8)}`, () => {
      assert.equal(parseModeString(s)(from, isDir).toString(8), want.toString(8));
    });
  }

  for (const bad of ["", "u", "u+x,", "z+x", "u*x", "+q", "8", "0789", "17777", "u+x,,g+w"]) {
    test(`${JSON.stringify(bad)} is rejected`, () => {
      assert.throws(() => parseModeString(bad), /invalid chmod mode/);
    });
  }
});
