// The frontends, exporters and sources built into the daemon: one registration line each.
import { registerPlugins } from "../../control/daemon.ts";
import { exporterFactories } from "../../exporter/index.ts";
import { DockerfileFrontend } from "../../frontend/dockerfile/frontend.ts";
import { cacheBackendFactories } from "../../remotecache/index.ts";

registerPlugins({ frontends: { "dockerfile.v0": () => new DockerfileFrontend() } });
registerPlugins({ exporters: exporterFactories });
registerPlugins({ cacheBackends: cacheBackendFactories });
