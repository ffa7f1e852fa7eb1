// `buildctl debug dump-dockerfile [FILE]`: the parse of a Dockerfile as JSON lines, one per
// instruction, with arguments exactly as written (before expansion and quote removal).
import { readFile } from "node:fs/promises";
import {
  DockerfileError,
  type Instruction,
  parseDockerfile,
} from "../../frontend/dockerfile/parser/index.ts";
import { readStdin } from "./io.ts";

/** One output line: the instruction, its flags, raw arguments, heredocs and line range. */
export interface DumpedInstruction {
  cmd: string;
  flags: string[];
  args: string[];
  heredocs: { name: string; content: string; expand: boolean }[];
  start: number;
  end: number;
}

/** The JSON-lines view of one instruction. */
export function dumpInstruction(i: Instruction): DumpedInstruction {
  const holder = i.sub ?? i;
  return {
    cmd: i.name,
    flags: i.flags,
    args: i.args,
    heredocs: holder.heredocs.map((h) => ({ name: h.name, content: h.content, expand: h.expand })),
    start: i.startLine,
    end: i.endLine,
  };
}

/** The JSON lines for Dockerfile text; throws DockerfileError on a syntax error. */
export function dumpDockerfileText(text: string | Uint8Array, file = "Dockerfile"): string {
  return parseDockerfile(text, { file })
    .instructions.map((i) => `${JSON.stringify(dumpInstruction(i))}\n`)
    .join("");
}

/** Reads FILE (or stdin when undefined or "-") and prints its parse to stdout. */
export async function dumpDockerfile(file: string | undefined): Promise<void> {
  const fromStdin = file === undefined || file === "-";
  const bytes = fromStdin ? await readStdin() : new Uint8Array(await readFile(file));
  try {
    process.stdout.write(dumpDockerfileText(bytes, fromStdin ? "Dockerfile" : file));
  } catch (e) {
    // Show the offending lines, then let the caller print the one-line message.
    if (e instanceof DockerfileError) process.stderr.write(e.format().replace(/[^\n]*\n$/, ""));
    throw e;
  }
}
