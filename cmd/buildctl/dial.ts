// The daemon connection every buildctl command uses: --addr and, for tcp://, mutual TLS from
// --tlscacert/--tlscert/--tlskey (files), read only when a command connects.
import { readFileSync } from "node:fs";
import type { Connection } from "../../client/connection.ts";

export interface DialFlags {
  addr: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  tlsservername?: string;
}

let flags: DialFlags = { addr: "unix:///run/buildd/buildd.sock" };

export function setDialFlags(f: DialFlags): void {
  flags = f;
}

export function dialAddr(): string {
  return flags.addr;
}

export async function dial(): Promise<Connection> {
  const { connect } = await import("../../client/connection.ts");
  const read = (flag: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`${flag} ${path}: ${(e as Error).message}`);
    }
  };
  const ca = read("--tlscacert", flags.tlscacert);
  const cert = read("--tlscert", flags.tlscert);
  const key = read("--tlskey", flags.tlskey);
  if ((cert === undefined) !== (key === undefined)) throw new Error("--tlscert and --tlskey go together");
  const tls = ca || cert ? { ca, cert, key, serverName: flags.tlsservername } : undefined;
  return connect(flags.addr, { tls });
}
