// The frontends, exporters, cache backends and sources built into the daemon: one registration each.
import { registerPlugins } from "../../control/daemon.ts";
import { exporterFactories } from "../../exporter/index.ts";
import { DockerfileFrontend } from "../../frontend/dockerfile/frontend.ts";
import { GatewayFrontend } from "../../frontend/gateway/frontend.ts";
import { cacheBackendFactories } from "../../remotecache/index.ts";

registerPlugins({ frontends: { "dockerfile.v0": () => new DockerfileFrontend() } });
registerPlugins({
  frontends: {
    "gateway.v0": (d) =>
      new GatewayFrontend({
        ...d,
        executor: d.worker.executor,
        mountRoot: d.worker.mountRoot,
        allowed: d.config.frontend.allowed,
        worker: d.worker,
      }),
  },
});
registerPlugins({ exporters: exporterFactories });
registerPlugins({ cacheBackends: cacheBackendFactories });
