// Shared by the example scripts: flag parsing and writing the definition to stdout.
import { parseArgs } from "node:util";
import type { State } from "../llb/index.ts";

/** Where buildd's sources live, for the examples that fetch them. */
export const BUILDD_REPO = "https://github.com/buildd-dev/buildd.git";
export const NODE_VERSION = "24.22.3";
export const NODE_URL = `https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz`;
export const DEBIAN = "docker.io/library/debian:bookworm-slim";

/** Parses --name=value flags, failing with usage on anything unknown. */
export function flags<T extends Record<string, { type: "string"; default: string }>>(
  options: T,
  usage: string,
): { [K in keyof T]: string } {
  try {
    const { values } = parseArgs({ options, strict: true, allowPositionals: false });
    return values as unknown as { [K in keyof T]: string };
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage}\n`);
    process.exit(2);
  }
}

/** Marshals the result and writes the Definition bytes to stdout (never to a terminal). */
export function emit(result: State): void {
  if (process.stdout.isTTY) {
    process.stderr.write(
      "refusing to write binary LLB to a terminal; pipe it into `bin/buildctl debug dump-llb` or `bin/buildctl build`\n",
    );
    process.exit(2);
  }
  process.stdout.write(result.marshal().bytes);
}
