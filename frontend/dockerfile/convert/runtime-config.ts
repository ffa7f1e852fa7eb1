// Values of EXPOSE and STOPSIGNAL checked as Docker does: port specs with ranges and
// protocols, and signal names or numbers.

const PROTOCOLS = new Set(["tcp", "udp", "sctp"]);

function parsePortRange(s: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error("bad range");
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535 || end < start) throw new Error("bad range");
  return [start, end];
}

/**
 * The "port/proto" keys a list of EXPOSE values stands for: "80" is "80/tcp", "8000-8002/udp"
 * three ports, "127.0.0.1:8080:80" the container port 80. Throws Docker's messages.
 */
export function parsePortSpecs(specs: readonly string[]): string[] {
  const ports = new Set<string>();
  for (const raw of specs) {
    const parts = raw.split(":");
    const containerPart = parts[parts.length - 1]!;
    const hostPart = parts.length >= 2 ? parts[parts.length - 2]! : "";
    const slash = containerPart.split("/");
    let proto = "tcp";
    let port = containerPart;
    if (containerPart === "" || slash[0] === "") port = "";
    else if (slash.length > 1) {
      port = slash[0]!;
      if (slash[1] !== "") proto = slash[1]!;
    }
    if (port === "") throw new Error(`no port specified: ${raw}<empty>`);
    let range: [number, number];
    try {
      range = parsePortRange(port);
    } catch {
      throw new Error(`invalid containerPort: ${port}`);
    }
    if (hostPart !== "") {
      try {
        parsePortRange(hostPart);
      } catch {
        throw new Error(`invalid hostPort: ${hostPart}`);
      }
    }
    if (!PROTOCOLS.has(proto.toLowerCase())) throw new Error(`invalid proto: ${proto}`);
    for (let p = range[0]; p <= range[1]; p++) ports.add(`${p}/${proto.toLowerCase()}`);
  }
  return [...ports];
}

const SIGNALS = new Set([
  "ABRT",
  "ALRM",
  "BUS",
  "CHLD",
  "CLD",
  "CONT",
  "FPE",
  "HUP",
  "ILL",
  "INT",
  "IO",
  "IOT",
  "KILL",
  "PIPE",
  "POLL",
  "PROF",
  "PWR",
  "QUIT",
  "SEGV",
  "STKFLT",
  "STOP",
  "SYS",
  "TERM",
  "TRAP",
  "TSTP",
  "TTIN",
  "TTOU",
  "URG",
  "USR1",
  "USR2",
  "VTALRM",
  "WINCH",
  "XCPU",
  "XFSZ",
  "RTMIN",
  "RTMAX",
]);

/** Checks a STOPSIGNAL value: a non-zero number, or a signal name with or without "SIG". */
export function checkSignal(raw: string): void {
  if (/^[+-]?\d+$/.test(raw)) {
    if (Number(raw) === 0) throw new Error(`Invalid signal: ${raw}`);
    return;
  }
  const name = raw.toUpperCase().replace(/^SIG/, "");
  const rt = /^RTMIN\+(\d+)$|^RTMAX-(\d+)$/.exec(name);
  if (rt) {
    const n = Number(rt[1] ?? rt[2]);
    if ((rt[1] !== undefined && n >= 1 && n <= 15) || (rt[2] !== undefined && n >= 1 && n <= 14)) return;
  }
  if (!SIGNALS.has(name)) throw new Error(`Invalid signal: ${raw}`);
}
