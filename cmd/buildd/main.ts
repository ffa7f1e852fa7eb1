// buildd: the build daemon. Parses flags over the config file, starts the daemon, and shuts it
// down cleanly on SIGTERM/SIGINT (running builds get a deadline to finish).
import { Command, CommanderError, Option } from "commander";
import { ConfigError, DEFAULT_CONFIG_PATH, type DaemonConfig, loadConfigFile } from "../../control/config.ts";
import { setLogLevel, isLogLevel, log } from "../../util/log.ts";
import "./plugins.ts";

const collect = (v: string, prev: string[] = []) => [...prev, v];

const program = new Command("buildd")
  .description("the buildd build daemon")
  .version("0.1.0-dev")
  .option("--config <file>", "config file (buildkitd.toml layout)", DEFAULT_CONFIG_PATH)
  .option("--root <dir>", "state directory")
  .option("--addr <address>", "listening address, unix:///path or tcp://host:port (repeatable)", collect)
  .option("--debug", "debug logging")
  .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]))
  .option("--tlscert <file>", "TLS certificate for tcp addresses")
  .option("--tlskey <file>", "TLS key for tcp addresses")
  .option("--tlscacert <file>", "CA that client certificates must be signed by (mutual TLS)")
  .addOption(
    new Option("--oci-worker-snapshotter <name>", "snapshotter").choices(["auto", "overlayfs", "native"]),
  )
  .option("--oci-worker-max-parallelism <n>", "how many steps run at once")
  .addOption(
    new Option("--oci-worker-net <mode>", "network of steps that do not ask for one").choices([
      "host",
      "none",
    ]),
  )
  .option(
    "--allow-insecure-entitlement <name>",
    "allow builds to ask for security.insecure or network.host (repeatable)",
    collect,
  )
  .option("--shutdown-timeout <seconds>", "how long SIGTERM waits for running builds", "60")
  .exitOverride();

interface Flags {
  config: string;
  root?: string;
  addr?: string[];
  debug?: boolean;
  logLevel?: string;
  tlscert?: string;
  tlskey?: string;
  tlscacert?: string;
  ociWorkerSnapshotter?: "auto" | "overlayfs" | "native";
  ociWorkerMaxParallelism?: string;
  ociWorkerNet?: "host" | "none";
  allowInsecureEntitlement?: string[];
  shutdownTimeout: string;
}

function applyFlags(c: DaemonConfig, f: Flags): DaemonConfig {
  const bad = (flag: string, why: string): never => {
    throw new ConfigError(`flag ${flag}: ${why}`);
  };
  if (f.root)
    c.root = f.root.startsWith("/")
      ? f.root
      : bad("--root", `want an absolute path, got ${JSON.stringify(f.root)}`);
  if (f.addr?.length) {
    for (const a of f.addr)
      if (!/^unix:\/\/\/.+|^tcp:\/\/[^/]+:\d+$/.test(a))
        bad("--addr", `want unix:///path or tcp://host:port, got ${JSON.stringify(a)}`);
    c.grpc.address = f.addr;
  }
  if (f.debug) c.log.level = "debug";
  if (f.logLevel && isLogLevel(f.logLevel)) c.log.level = f.logLevel;
  if (f.tlscert || f.tlskey || f.tlscacert) {
    if (!f.tlscert || !f.tlskey) bad("--tlscert/--tlskey", "both are needed for TLS");
    c.grpc.tls = { cert: f.tlscert!, key: f.tlskey!, ca: f.tlscacert };
  }
  if (f.ociWorkerSnapshotter) c.worker.oci.snapshotter = f.ociWorkerSnapshotter;
  if (f.ociWorkerMaxParallelism !== undefined) {
    const n = Number(f.ociWorkerMaxParallelism);
    c.worker.oci.maxParallelism =
      Number.isInteger(n) && n > 0 ? n : bad("--oci-worker-max-parallelism", "want a positive integer");
  }
  if (f.ociWorkerNet) c.worker.oci.networkMode = f.ociWorkerNet;
  for (const e of f.allowInsecureEntitlement ?? []) {
    if (e !== "security.insecure" && e !== "network.host")
      bad("--allow-insecure-entitlement", `unknown entitlement ${JSON.stringify(e)}`);
    if (!c.insecureEntitlements.includes(e)) c.insecureEntitlements.push(e);
  }
  return c;
}

async function main(): Promise<void> {
  program.parse(process.argv);
  const flags = program.opts<Flags>();
  const explicit = process.argv.some((a) => a === "--config" || a.startsWith("--config="));
  const config = applyFlags(await loadConfigFile(flags.config, explicit), flags);
  setLogLevel(config.log.level);
  const { startDaemon } = await import("../../control/daemon.ts");
  const daemon = await startDaemon(config);
  const deadlineMs = Number(flags.shutdownTimeout) * 1000;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn("second signal: exiting now", { signal });
      process.exit(1);
    }
    stopping = true;
    log.info("shutting down", { signal, runningBuilds: daemon.controller.active });
    daemon.close({ deadlineMs }).then(
      () => process.exit(0),
      (e: unknown) => {
        log.error("shutdown failed", { error: e });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((e: unknown) => {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode;
    return;
  }
  process.stderr.write(`buildd: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
