// /etc/hosts and /etc/resolv.conf for one run: generated outside the rootfs and bind-mounted over
// it, so they never land in the output layer.
import { isIP } from "node:net";
import type { NetworkMode } from "./types.ts";

/** The default hostname, as in BuildKit: some build scripts look for it. */
export const DEFAULT_HOSTNAME = "buildkitsandbox";

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$/;
const HOST_ALIAS_RE = /^[^\s#]+$/;

/** Throws unless `hostname` is a valid host name (letters, digits, '-', '.'). */
export function checkHostname(hostname: string): void {
  if (!HOSTNAME_RE.test(hostname)) {
    throw new Error(`invalid hostname ${JSON.stringify(hostname)}: use letters, digits, '-' and '.'`);
  }
}

/** /etc/hosts: loopback names, the container's hostname, then the extra hosts in order. */
export function hostsFile(hostname: string, extraHosts: { host: string; ip: string }[] = []): string {
  let out = `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  for (const { host, ip } of extraHosts) {
    if (!HOST_ALIAS_RE.test(host) || isIP(ip) === 0) {
      throw new Error(`invalid extra host ${JSON.stringify(`${host}:${ip}`)}: want a name and an IP address`);
    }
    out += `${ip}\t${host}\n`;
  }
  return out;
}

const FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"];

function isLoopbackNameserver(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1";
}

/**
 * /etc/resolv.conf from the host's: with a network other than the host's, loopback nameservers
 * cannot be reached and are dropped; when none remain, public resolvers are used (as Docker does).
 */
export function resolvConf(hostResolvConf: string, network: NetworkMode): string {
  if (network === "host") return hostResolvConf;
  const lines: string[] = [];
  let nameservers = 0;
  for (const line of hostResolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m !== null) {
      if (isLoopbackNameserver(m[1]!)) continue;
      nameservers++;
    }
    lines.push(line);
  }
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  if (nameservers === 0) lines.push(...FALLBACK_NAMESERVERS.map((ns) => `nameserver ${ns}`));
  return lines.join("\n") + "\n";
}
