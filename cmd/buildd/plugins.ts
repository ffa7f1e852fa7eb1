// The frontends, exporters and sources built into the daemon: one registration line each.
// (Filled as they land; importing a plugin module registers it.)
import { registerPlugins } from "../../control/daemon.ts";
import { exporterFactories } from "../../exporter/index.ts";

registerPlugins({ exporters: exporterFactories });
