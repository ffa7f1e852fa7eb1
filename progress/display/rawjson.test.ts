import assert from "node:assert/strict";
import { test } from "node:test";
import { CapturedOutput, LAYER, NAMES, scriptedBuild, streamOf, T0, V } from "../scripted-build.test-util.ts";
import { emptyStatus } from "../types.ts";
import { displayRawJSON, rfc3339Nano, solveStatusJSON } from "./rawjson.ts";

const RFC3339_NANO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;

test("times are RFC 3339 in UTC with the fraction's trailing zeros dropped, as Go prints them", () => {
  assert.equal(rfc3339Nano(T0), "2023-11-14T22:13:20Z");
  assert.equal(rfc3339Nano(T0 + 120), "2023-11-14T22:13:20.12Z");
  assert.equal(rfc3339Nano(T0 + 7), "2023-11-14T22:13:20.007Z");
  assert.equal(rfc3339Nano(T0 + 0.5), "2023-11-14T22:13:20.0005Z");
});

test("one JSON line per batch, with BuildKit's field names, base64 bytes and empty fields omitted", async () => {
  const out = new CapturedOutput();
  const batches = scriptedBuild();
  const summary = await displayRawJSON(streamOf(batches), out);
  assert.equal(summary.errored, 1);
  const lines = out.text.split("\n");
  assert.equal(lines.pop(), "");
  assert.equal(lines.length, batches.length);
  const objs = lines.map((l) => JSON.parse(l));

  // Pending vertices: no times, no cached:false, no empty inputs.
  assert.deepEqual(objs[0].vertexes[0], { digest: V.context, name: NAMES.context });
  assert.deepEqual(Object.keys(objs[0]), ["vertexes"]);
  const make = objs[0].vertexes[2];
  assert.deepEqual(make.inputs, [V.context, V.pull]);

  const cached = objs[1].vertexes[0];
  assert.equal(cached.cached, true);
  assert.match(cached.started, RFC3339_NANO);
  assert.equal(Date.parse(cached.completed), T0 + 5);

  // A counter at zero keeps "current" (not omitempty in Go) and has no "name".
  assert.deepEqual(objs[2].statuses[0], {
    id: LAYER,
    vertex: V.pull,
    total: 2_100_000,
    current: 0,
    timestamp: rfc3339Nano(T0 + 20),
    started: rfc3339Nano(T0 + 20),
  });
  assert.equal(objs[4].statuses[0].completed, rfc3339Nano(T0 + 900));

  const logs = objs.flatMap((o) => o.logs ?? []);
  const makeOut = logs
    .filter((l: { vertex: string; stream: number }) => l.vertex === V.make && l.stream === 1)
    .map((l: { data: string }) => Buffer.from(l.data, "base64").toString("utf8"))
    .join("");
  assert.equal(makeOut, "compiling a.c\ncompiling b.c\nlinking\ndone");
  for (const l of logs) assert.match(l.timestamp, RFC3339_NANO);

  const warning = objs[7].warnings[0];
  assert.equal(Buffer.from(warning.short, "base64").toString(), "RUN uses a deprecated flag");
  assert.deepEqual(
    warning.detail.map((d: string) => Buffer.from(d, "base64").toString()),
    ["--security=sandbox is the default and can be dropped"],
  );
  assert.equal(warning.level, 1);
  assert.equal(warning.url, "https://example.invalid/flags");

  const failed = objs[8].vertexes[0];
  assert.match(failed.error, /exit code: 1/);
});

test("an empty batch is an empty object; stream 0 and level 0 are omitted like Go's zero values", () => {
  assert.deepEqual(solveStatusJSON(emptyStatus()), {});
  const o = solveStatusJSON({
    ...emptyStatus(),
    logs: [{ vertex: "v", stream: 0, data: new Uint8Array([0, 255]), timestamp: T0 }],
    warnings: [
      {
        vertex: "v",
        level: 0,
        short: "",
        detail: [],
        source: { filename: "Dockerfile", ranges: [{ start: 3, end: 4 }] },
      },
    ],
  });
  assert.deepEqual(o, {
    logs: [{ vertex: "v", data: "AP8=", timestamp: rfc3339Nano(T0) }],
    warnings: [
      {
        vertex: "v",
        sourceInfo: { filename: "Dockerfile" },
        range: [{ start: { line: 3 }, end: { line: 4 } }],
      },
    ],
  });
});
