// The entry point of a frontend image: connect over stdio, ping, run the build function, and
// Return its result or its error. stdout carries the gRPC connection, so console output is
// moved to stderr (the daemon shows it in the build's progress).
import type { Duplex } from "node:stream";
import { type BuildResult, GatewayClient } from "./client.ts";
import { connectBridge, stdioStream } from "./connection.ts";

/** A frontend: turns the client's options into a result, asking the daemon as it goes. */
export type BuildFunction = (client: GatewayClient) => Promise<BuildResult>;

export interface RunOptions {
  /** The connection to the daemon; default: this process' stdin and stdout. */
  stream?: Duplex;
  /** Where options come from; default: process.env. */
  env?: Record<string, string | undefined>;
  /** Exit the process when done (default true in a frontend container). */
  exit?: boolean;
}

/** Runs `build` as the frontend of this build. Resolves with the exit code it would use. */
export async function run(build: BuildFunction, opts: RunOptions = {}): Promise<number> {
  const viaStdio = opts.stream === undefined;
  if (viaStdio) {
    // A stray console.log would corrupt the gRPC stream on stdout.
    const toStderr = (...args: unknown[]) => console.error(...args);
    console.log = toStderr;
    console.info = toStderr;
    console.debug = toStderr;
  }
  const conn = connectBridge(opts.stream ?? stdioStream());
  const client = new GatewayClient(conn, opts.env ?? process.env);
  let code = 0;
  try {
    await client.ping();
    let result: BuildResult;
    try {
      result = await build(client);
    } catch (e) {
      await client.returnError(e);
      code = 1;
      return code;
    }
    await client.return(result);
  } catch (e) {
    // The daemon could not be told: say it where it is seen (the progress' frontend log).
    process.stderr.write(`frontend: talking to the daemon failed: ${(e as Error).message}\n`);
    code = 2;
  } finally {
    client.close();
    if (opts.exit ?? viaStdio) process.exit(code);
  }
  return code;
}
