// Running a short-lived system tool (mount, umount, runc kill/delete) and reporting its failure.
import { spawn } from "node:child_process";
import { constants } from "node:os";

const MAX_STDERR = 8192;

/** What a tool printed and how it ended. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `file args`, never throwing for a non-zero exit: callers decide what a failure means. */
export function runTool(file: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < MAX_STDERR) stderr += d;
    });
    child.on("error", (e) => reject(new Error(`running ${file}: ${e.message}`)));
    child.on("close", (code, signal) => {
      resolve({
        code: code ?? 128 + (signal === null ? 0 : constants.signals[signal]),
        stdout,
        stderr: stderr.trim(),
      });
    });
  });
}

/** Runs `file args` and throws, saying what was being done, when it exits non-zero. */
export async function mustRunTool(file: string, args: string[], doing: string): Promise<string> {
  const r = await runTool(file, args);
  if (r.code !== 0) {
    throw new Error(`${doing}: ${file} exited with ${r.code}${r.stderr === "" ? "" : `: ${r.stderr}`}`);
  }
  return r.stdout;
}
