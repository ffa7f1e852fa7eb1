// buildd: the build daemon. The daemon itself lands with the daemon issue; until then this
// entry point only identifies itself so that `make binaries` produces a runnable file.
const version = "0.1.0-dev";

if (process.argv.includes("--version")) {
  console.log(`buildd ${version}`);
} else {
  console.error("buildd: the daemon is not implemented yet; see README.md for what works today");
  process.exitCode = 1;
}
