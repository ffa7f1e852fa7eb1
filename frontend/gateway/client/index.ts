// The gateway client library for frontend authors: a frontend image's entry point is
// `run(async (c) => { ... return { ref, imageConfig }; })`. See ../README.md.
export { bridgeFromClient, buildResult, solveWithFrontend } from "./bridge.ts";
export {
  type BuildResult,
  type FileStat,
  GatewayClient,
  GatewaySolveError,
  type Reference,
  type SolveRequest,
  type SolveResult,
  type WorkerInfo,
} from "./client.ts";
export { type BridgeConnection, connectBridge, stdioStream } from "./connection.ts";
export { type BuildFunction, type RunOptions, run } from "./run.ts";
export { stateFromDefinition } from "./state.ts";
