// The Dockerfile frontend as an image: the same DockerfileFrontend the daemon has built in,
// driven through the gateway client, so `--frontend gateway.v0 --opt source=THIS_IMAGE` (or
// `# syntax=THIS_IMAGE`) gives the same definitions, cache keys and image config as
// `--frontend dockerfile.v0`.
import { DockerfileFrontend } from "../../../frontend/dockerfile/frontend.ts";
import { run, solveWithFrontend } from "../../../frontend/gateway/client/index.ts";
import { SolveError } from "../../../solver/solver.ts";
import type { Digest } from "../../../util/digest.ts";

await run((c) =>
  solveWithFrontend(c, new DockerfileFrontend(), {
    // A failed step keeps its identity, so the frontend can show the Dockerfile lines that made it.
    solveError: (e) =>
      e.vertex ? new SolveError(e.message, { digest: e.vertex.digest as Digest, name: e.vertex.name }) : e,
  }),
);
