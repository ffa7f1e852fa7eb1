// buildctl: the command-line client. Commands are registered here and their implementations
// loaded on demand, so that start-up only pays for the command being run.
import { Command, CommanderError } from "commander";
import { installLightHeaders } from "./headers.ts";

installLightHeaders();

const program = new Command("buildctl")
  .description("build with buildd, inspect and prune its cache")
  .version("0.1.0-dev")
  .option(
    "--addr <address>",
    "buildd address",
    process.env.BUILDD_HOST ?? process.env.BUILDKIT_HOST ?? "unix:///run/buildd/buildd.sock",
  )
  .option("--tlscacert <file>", "CA certificate to verify the daemon (tcp:// addresses)")
  .option("--tlscert <file>", "client certificate (mutual TLS)")
  .option("--tlskey <file>", "client key (mutual TLS)")
  .option("--tlsservername <name>", "name to verify the daemon's certificate against")
  .hook("preAction", async () => {
    const { setDialFlags } = await import("./dial.ts");
    setDialFlags(program.opts());
  })
  .showHelpAfterError()
  .exitOverride();

const collect = (v: string, prev: string[] = []) => [...prev, v];

program
  .command("build")
  .description("build: a frontend's output, or the LLB definition read from stdin")
  .option(
    "--frontend <name>",
    "frontend (dockerfile.v0, gateway.v0); without it the definition comes from stdin",
  )
  .option("--opt <key=value>", "frontend option (repeatable)", collect, [])
  .option("--local <name=path>", "local directory for the build (repeatable)", collect, [])
  .option(
    "--oci-layout <name=path>",
    "OCI image layout for oci-layout://name sources (repeatable)",
    collect,
    [],
  )
  .option(
    "-o, --output <type=...,key=value>",
    "output: type=image|local|tar|oci|docker plus attributes (repeatable)",
    collect,
    [],
  )
  .option("--secret <id=...,src=...|env=...>", "secret for RUN --mount=type=secret (repeatable)", collect, [])
  .option(
    "--ssh <id[=socket]>",
    "ssh agent to forward: default (SSH_AUTH_SOCK) or id=socket (repeatable)",
    collect,
    [],
  )
  .option("--no-cache", "run every step, ignoring the cache")
  .option("--progress <mode>", "auto, tty, plain, rawjson or quiet", "auto")
  .option("--trace <file>", "write a Chrome trace-event file of the build")
  .option("--metadata-file <file>", "write the build's result metadata as JSON")
  .option("--export-cache <type=...>", "export the build cache (repeatable)", collect, [])
  .option("--import-cache <type=...>", "import a build cache (repeatable)", collect, [])
  .option("--allow <entitlement>", "allow security.insecure or network.host (repeatable)", collect, [])
  .option("--ref <ref>", "the build's ref (default: random)")
  .action(async (opts: Record<string, unknown>) => {
    const { build } = await import("./build.ts");
    await import("./session-services.ts");
    const progress = String(opts.progress);
    if (!["auto", "tty", "plain", "rawjson", "quiet"].includes(progress)) {
      throw new Error(`--progress ${JSON.stringify(progress)}: want auto, tty, plain, rawjson or quiet`);
    }
    await build({
      addr: program.opts().addr,
      frontend: opts.frontend as string | undefined,
      opt: opts.opt as string[],
      local: opts.local as string[],
      ociLayout: opts.ociLayout as string[],
      output: opts.output as string[],
      secret: opts.secret as string[],
      ssh: opts.ssh as string[],
      noCache: opts.cache === false,
      progress,
      trace: opts.trace as string | undefined,
      metadataFile: opts.metadataFile as string | undefined,
      exportCache: opts.exportCache as string[],
      importCache: opts.importCache as string[],
      allow: opts.allow as string[],
      ref: opts.ref as string | undefined,
    });
  });

program
  .command("du")
  .description("disk usage of the build cache")
  .option("-v, --verbose", "every field of every record")
  .option("--filter <filter>", "containerd-style filter, e.g. type==regular (repeatable)", collect, [])
  .action(async (opts: { verbose?: boolean; filter: string[] }) => {
    const { du } = await import("./admin.ts");
    await du(program.opts().addr, opts);
  });

program
  .command("prune")
  .description("remove build cache")
  .option("--keep-duration <duration>", "keep what was used within this long (e.g. 48h)")
  .option("--keep-storage <size>", "keep this much (e.g. 10GB)")
  .option("--filter <filter>", "containerd-style filter (repeatable)", collect, [])
  .option("-a, --all", "include internal and frontend records")
  .option("-v, --verbose", "list what is removed")
  .action(
    async (opts: {
      keepDuration?: string;
      keepStorage?: string;
      filter: string[];
      all?: boolean;
      verbose?: boolean;
    }) => {
      const { prune } = await import("./admin.ts");
      await prune(program.opts().addr, opts);
    },
  );

const debug = program.command("debug").description("debugging tools");

debug
  .command("workers")
  .description("list the daemon's workers")
  .option("-v, --verbose", "labels and GC policies")
  .option("--filter <filter>", "containerd-style filter (repeatable)", collect, [])
  .action(async (opts: { verbose?: boolean; filter: string[] }) => {
    const { workers } = await import("./admin.ts");
    await workers(program.opts().addr, opts);
  });

debug
  .command("info")
  .description("the daemon's version")
  .action(async () => {
    const { info } = await import("./admin.ts");
    await info(program.opts().addr);
  });

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
    // ConnectError's message starts with "[code]"; users want the daemon's words only.
    const msg = (e as { rawMessage?: string }).rawMessage ?? (e as Error).message;
    process.stderr.write(`${process.argv.includes("build") ? "error" : "buildctl"}: ${msg}\n`);
    process.exitCode = 1;
  }
}
