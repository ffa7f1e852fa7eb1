// `buildctl debug dump-llb`: decode, validate and print a definition.
import { readFile } from "node:fs/promises";
import { dumpDot, dumpJson, loadDefinition } from "../../llb/index.ts";
import { readStdin } from "./io.ts";

export async function dumpLLB(file: string | undefined, opts: { dot?: boolean }): Promise<void> {
  const bytes = file === undefined || file === "-" ? await readStdin() : new Uint8Array(await readFile(file));
  const def = loadDefinition(bytes);
  if (opts.dot) {
    process.stdout.write(dumpDot(def));
    return;
  }
  process.stdout.write(
    dumpJson(def)
      .map((e) => `${JSON.stringify(e)}\n`)
      .join(""),
  );
}
