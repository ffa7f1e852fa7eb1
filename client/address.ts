// Daemon addresses in BuildKit's BUILDKIT_HOST form, shared by the client and the daemon's
// listeners. Dependency-free so that importing it costs the CLI nothing.

/** Where a daemon listens: a unix socket path, or a TCP host and port. */
export type Address = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** The daemon's default address, as for buildkitd (/run/buildkit/buildkitd.sock). */
export const DEFAULT_ADDRESS = "unix:///run/buildd/buildd.sock";

/**
 * Parses `unix:///abs/path.sock` or `tcp://host:port` (IPv6 as `tcp://[::1]:port`). Throws an
 * error naming the accepted forms for anything else, since a typo here otherwise surfaces as
 * a confusing connection error.
 */
export function parseAddress(addr: string): Address {
  const forms = "want unix:///path/to.sock or tcp://host:port";
  if (addr.startsWith("unix://")) {
    const path = addr.slice("unix://".length);
    if (path === "") throw new Error(`invalid address ${JSON.stringify(addr)}: empty socket path; ${forms}`);
    if (path.includes("\0")) throw new Error(`invalid address ${JSON.stringify(addr)}: NUL in socket path`);
    return { kind: "unix", path };
  }
  if (addr.startsWith("tcp://")) {
    const rest = addr.slice("tcp://".length).replace(/\/$/, "");
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:/[\]]+)):(\d{1,5})$/.exec(rest);
    if (!m) throw new Error(`invalid address ${JSON.stringify(addr)}: ${forms}`);
    const port = Number(m[3]);
    if (port > 65535) throw new Error(`invalid address ${JSON.stringify(addr)}: port ${port} out of range`);
    return { kind: "tcp", host: m[1] ?? m[2]!, port };
  }
  throw new Error(`unsupported address ${JSON.stringify(addr)}: ${forms}`);
}

/** The canonical string form of an address (IPv6 hosts in brackets). */
export function formatAddress(a: Address): string {
  if (a.kind === "unix") return `unix://${a.path}`;
  return `tcp://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}
