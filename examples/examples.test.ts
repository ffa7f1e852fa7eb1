// The examples must print definitions that load and have the shape they promise.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { describeOp, loadDefinition } from "../llb/index.ts";

function ops(script: string, ...args: string[]): string[] {
  const bytes = execFileSync(process.execPath, [join(import.meta.dirname, script), ...args], {
    maxBuffer: 64 << 20,
  });
  const def = loadDefinition(new Uint8Array(bytes));
  return def.order.map((d) => describeOp(def.ops.get(d)!.op));
}

test("buildd0 uses exec ops only", () => {
  const o = ops("buildd0.ts");
  assert.ok(
    o.every((d) => /^(source docker-image|exec|result)/.test(d)),
    o.join("\n"),
  );
  assert.ok(o.some((d) => d.includes("git clone")));
});

test("buildd1 splits fetching into its own stages", () => {
  const o = ops("buildd1.ts");
  assert.ok(o.some((d) => d.startsWith("exec") && d.includes("curl")));
  assert.ok(o.some((d) => d.startsWith("exec") && d.includes("git clone")));
  assert.ok(!o.some((d) => d.includes("npm ci") && d.includes("git clone")));
});

test("buildd2 uses git and http sources", () => {
  const o = ops("buildd2.ts", "--ref=v1.0.0");
  assert.ok(
    o.some((d) => d.startsWith("source git://github.com/buildd-dev/buildd.git#v1.0.0")),
    o.join("\n"),
  );
  assert.ok(o.some((d) => d.startsWith("source https://nodejs.org/")));
  assert.ok(!o.some((d) => d.includes("git clone")));
});

test("buildd3 takes buildd's source from a local dir when asked", () => {
  assert.ok(ops("buildd3.ts", "--buildd=local").some((d) => d === "source local://buildd-src"));
  assert.ok(ops("buildd3.ts").some((d) => d.startsWith("source git://")));
  assert.throws(() =>
    execFileSync(process.execPath, [join(import.meta.dirname, "buildd3.ts"), "--buildd=svn"], {
      stdio: "pipe",
    }),
  );
});
