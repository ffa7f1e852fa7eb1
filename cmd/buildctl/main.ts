// buildctl: the command-line client. Commands are registered here and their implementations
// loaded on demand, so that start-up only pays for the command being run.
import { Command, CommanderError } from "commander";

const program = new Command("buildctl")
  .description("build with buildd, inspect and prune its cache")
  .version("0.1.0-dev")
  .option(
    "--addr <address>",
    "buildd address",
    process.env.BUILDD_HOST ?? process.env.BUILDKIT_HOST ?? "unix:///run/buildd/buildd.sock",
  )
  .showHelpAfterError()
  .exitOverride();

const debug = program.command("debug").description("debugging tools");

debug
  .command("dump-llb")
  .description("print an LLB definition (from FILE or stdin) as one JSON object per op")
  .argument("[file]", "definition file; - or omitted for stdin")
  .option("--dot", "print a Graphviz graph instead")
  .action(async (file: string | undefined, opts: { dot?: boolean }) => {
    const { dumpLLB } = await import("./dump-llb.ts");
    await dumpLLB(file, opts);
  });

debug
  .command("dump-dockerfile")
  .description("print how a Dockerfile parses: one JSON object per instruction")
  .argument("[file]", "Dockerfile; - or omitted for stdin")
  .action(async (file: string | undefined) => {
    const { dumpDockerfile } = await import("./dump-dockerfile.ts");
    await dumpDockerfile(file);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode;
  } else {
    process.stderr.write(`buildctl: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
