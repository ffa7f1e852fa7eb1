// A small build's progress stream, scripted batch by batch as the solver would emit it: a cached
// source, an image pull with byte counters, a step with output (lines cut across chunks, both
// streams) running alongside a step that fails, a warning, and an export that never starts.
import { digestOf } from "../util/digest.ts";
import { emptyStatus, type SolveStatus } from "./types.ts";

export const T0 = 1_700_000_000_000;

export const V = {
  context: digestOf("context"),
  pull: digestOf("pull"),
  make: digestOf("make"),
  test: digestOf("test"),
  export: digestOf("export"),
} as const;

export const LAYER = `sha256:${"8a0af6c1".repeat(8)}`;

export const NAMES = {
  context: "[internal] load build context",
  pull: "[1/3] FROM docker.io/library/busybox:latest",
  make: "[2/3] RUN make",
  test: "[3/3] RUN ./test.sh",
  export: "exporting to image",
} as const;

export const TEST_ERROR = 'process "/bin/sh -c ./test.sh" did not complete successfully: exit code: 1';

const enc = (s: string) => new TextEncoder().encode(s);

function vertex(key: keyof typeof V, fields: Partial<SolveStatus["vertexes"][number]> = {}) {
  const inputs = key === "make" ? [V.context, V.pull] : key === "test" ? [V.make] : [];
  return { digest: V[key], name: NAMES[key], inputs, ...fields };
}

function log(key: keyof typeof V, at: number, data: string, stream = 1) {
  return { vertex: V[key], stream, data: enc(data), timestamp: T0 + at };
}

function layer(at: number, current: number, completed?: number) {
  return {
    id: LAYER,
    vertex: V.pull,
    name: "",
    current,
    total: 2_100_000,
    timestamp: T0 + at,
    started: T0 + 20,
    ...(completed !== undefined ? { completed: T0 + completed } : {}),
  };
}

/** The batches, each with the time (ms since the epoch) at which a client would receive it. */
export function scriptedBuild(): { at: number; status: SolveStatus }[] {
  const b = (at: number, s: Partial<SolveStatus>) => ({ at: T0 + at, status: { ...emptyStatus(), ...s } });
  return [
    b(0, { vertexes: [vertex("context"), vertex("pull"), vertex("make"), vertex("test"), vertex("export")] }),
    b(10, {
      vertexes: [
        vertex("context", { started: T0 + 5, completed: T0 + 5, cached: true }),
        vertex("pull", { started: T0 + 10 }),
      ],
    }),
    b(20, { statuses: [layer(20, 0)] }),
    b(540, { statuses: [layer(520, 1_050_000), layer(540, 1_060_000)] }),
    b(950, {
      vertexes: [vertex("pull", { started: T0 + 10, completed: T0 + 950 })],
      statuses: [layer(900, 2_100_000, 900)],
    }),
    b(1100, {
      vertexes: [vertex("make", { started: T0 + 1000 }), vertex("test", { started: T0 + 1000 })],
      logs: [log("make", 1100, "compiling a.c\ncompil")],
    }),
    b(1400, {
      logs: [
        log("make", 1250, "ing b.c\n"),
        log("make", 1300, "warning: unused variable\n", 2),
        log("test", 1400, "running tests\n"),
      ],
    }),
    b(2500, {
      vertexes: [vertex("make", { started: T0 + 1000, completed: T0 + 2500 })],
      logs: [log("make", 2400, "linking\ndone")],
      warnings: [
        {
          vertex: V.make,
          level: 1,
          short: "RUN uses a deprecated flag",
          detail: ["--security=sandbox is the default and can be dropped"],
          url: "https://example.invalid/flags",
        },
      ],
    }),
    b(2700, {
      vertexes: [vertex("test", { started: T0 + 1000, completed: T0 + 2700, error: TEST_ERROR })],
      logs: [log("test", 2600, "FAIL: test_parse (expected 2, got 3)\n")],
    }),
  ];
}

/** The batches as a stream; `onBatch` runs before each is yielded (to move a fake clock). */
export async function* streamOf(
  batches: { at: number; status: SolveStatus }[],
  onBatch: (at: number) => void = () => {},
): AsyncGenerator<SolveStatus> {
  for (const { at, status } of batches) {
    onBatch(at);
    yield status;
  }
}

/** A stream object that records what is written to it, shaped like a terminal when asked. */
export class CapturedOutput {
  chunks: string[] = [];
  isTTY: boolean;
  columns: number | undefined;
  rows: number | undefined;

  constructor(opts: { isTTY?: boolean; columns?: number; rows?: number } = {}) {
    this.isTTY = opts.isTTY ?? false;
    this.columns = opts.columns;
    this.rows = opts.rows;
  }

  write(chunk: string): boolean {
    this.chunks.push(chunk);
    return true;
  }

  get text(): string {
    return this.chunks.join("");
  }
}
