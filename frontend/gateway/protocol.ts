// What both ends of the gateway agree on besides the protobuf schema: the environment a frontend
// container starts with (BuildKit's names, so BuildKit frontend images read it too) and the
// capabilities the daemon announces. Pure constants: the client library bundles this file.

/** `BUILDKIT_FRONTEND_OPT_<n>=<key>=<value>`, one per frontend option (keys are free-form). */
export const ENV_FRONTEND_OPT_PREFIX = "BUILDKIT_FRONTEND_OPT_";
/** The client's session id, for local sources the frontend asks for. */
export const ENV_SESSION_ID = "BUILDKIT_SESSION_ID";
/** JSON list of the workers: `[{"id", "labels", "platforms": [{"os", "architecture"}]}]`. */
export const ENV_WORKERS = "BUILDKIT_WORKERS";
/** The name of the daemon's product, as BuildKit's apicaps call it. */
export const ENV_EXPORTED_PRODUCT = "BUILDKIT_EXPORTEDPRODUCT";
export const EXPORTED_PRODUCT = "buildd";

/** The frontend option naming the frontend image of `gateway.v0`. */
export const OPT_SOURCE = "source";
/** Set when a build was handed over by `# syntax=`; a frontend seeing it does not hand over again. */
export const OPT_CMDLINE = "cmdline";
/** Capabilities a caller requires of the frontend, comma-separated. */
export const OPT_FRONTEND_CAPS = "frontend.caps";

/** Error metadata naming the step that failed, so a frontend can point at its own source. */
export const HEADER_VERTEX_DIGEST = "buildd-vertex-digest";
export const HEADER_VERTEX_NAME = "buildd-vertex-name";

/** The LLBBridge capabilities this daemon serves (BuildKit's ids). */
export const GATEWAY_CAPS = [
  "solve.base",
  "solve.inlinereturn",
  "resolveimage",
  "resolveimage.resolvemode",
  "readfile",
  "return",
  "returnmap",
  "readdir",
  "statfile",
  "proto.refarray",
  "reference.output",
  "frontend.inputs",
  "gateway.solve.metadata",
  "frontend.caps",
  "gateway.solve.evaluate",
  "gateway.warnings",
] as const;

/** LLB capabilities the worker runs (BuildKit's ids), for frontends that check before they build. */
export const LLB_CAPS = [
  "source.image",
  "source.image.resolvemode",
  "source.local",
  "source.local.unique",
  "source.local.sessionid",
  "source.local.includepatterns",
  "source.local.excludepatterns",
  "source.local.followpaths",
  "source.local.sharedkeyhint",
  "source.git",
  "source.git.keepgitdir",
  "source.git.fullurl",
  "source.http",
  "source.http.checksum",
  "source.http.perm",
  "source.http.uidgid",
  "source.buildop.llbfilename",
  "source.ocilayout",
  "exec.meta.base",
  "exec.meta.proxy",
  "exec.meta.network",
  "exec.meta.security",
  "exec.meta.hostname",
  "exec.meta.ulimit",
  "exec.meta.removemountstubs.recursive",
  "exec.mount.bind",
  "exec.mount.bind.readonly",
  "exec.mount.cache",
  "exec.mount.cache.sharing",
  "exec.mount.selector",
  "exec.mount.tmpfs",
  "exec.mount.tmpfs.size",
  "exec.mount.secret",
  "exec.secret.env",
  "exec.extrahosts",
  "exec.validexitcode",
  "file.base",
  "file.rm.nolink",
  "file.copy.includeexcludepatterns",
  "file.copy.alwaysreplaceexistingdestpaths",
  "constraints",
  "platform",
  "meta.ignorecache",
  "meta.description",
  "meta.exporter.cache",
  "mergeop",
  "diffop",
] as const;

/** Frontend options as BuildKit passes them: numbered variables, because keys ("build-arg:X") are not names. */
export function optionsToEnv(opts: Record<string, string>): string[] {
  return Object.keys(opts)
    .sort()
    .map((k, i) => `${ENV_FRONTEND_OPT_PREFIX}${i}=${k}=${opts[k]}`);
}

/** The frontend options in an environment (`process.env` in a frontend container). */
export function optionsFromEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_FRONTEND_OPT_PREFIX) || value === undefined) continue;
    const i = value.indexOf("=");
    if (i < 0) out[value] = "";
    else out[value.slice(0, i)] = value.slice(i + 1);
  }
  return out;
}
