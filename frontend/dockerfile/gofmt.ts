// Go's text formats that leak into Dockerfile results: image history strings are written with
// Go's %q and %v verbs, health-check durations with time.Duration, and errors quote words the way
// strconv.Quote does. Matching them byte for byte keeps our images identical to BuildKit's.

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function escapeRune(cp: number, quote: string): string {
  const ch = String.fromCodePoint(cp);
  if (ch === quote || ch === "\\") return `\\${ch}`;
  if (PRINTABLE.test(ch)) return ch;
  const named: Record<number, string> = {
    7: "\\a",
    8: "\\b",
    12: "\\f",
    10: "\\n",
    13: "\\r",
    9: "\\t",
    11: "\\v",
  };
  if (named[cp]) return named[cp]!;
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, "0")}`;
  if (cp >= 0xd800 && cp <= 0xdfff) return "\\ufffd";
  if (cp < 0x10000) return `\\u${cp.toString(16).padStart(4, "0")}`;
  return `\\U${cp.toString(16).padStart(8, "0")}`;
}

/** Go's strconv.Quote: a double-quoted string literal with Go escapes. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) out += escapeRune(ch.codePointAt(0)!, '"');
  return `${out}"`;
}

/** Go's strconv.QuoteRune, which is what %q prints for an integer. */
export function goQuoteRune(n: number): string {
  const cp = n < 0 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) ? 0xfffd : n;
  return `'${escapeRune(cp, "'")}'`;
}

/** Go's %q of a []string: `["a" "b"]`. */
export function goQuoteList(list: readonly string[]): string {
  return `[${list.map(goQuote).join(" ")}]`;
}

/** Go's %v of a []string: `[a b]`. */
export function goList(list: readonly string[]): string {
  return `[${list.join(" ")}]`;
}

const NS = { ns: 1n, us: 1000n, µs: 1000n, μs: 1000n, ms: 1_000_000n, s: 1_000_000_000n } as const;
const UNITS: Record<string, bigint> = { ...NS, m: 60n * NS.s, h: 3600n * NS.s };

/** Go's time.Duration.String(): "1h2m3.5s", "150ms", "0s". */
export function goDuration(nanos: bigint): string {
  if (nanos === 0n) return "0s";
  const neg = nanos < 0n;
  let u = neg ? -nanos : nanos;
  let out: string;
  if (u < NS.s) {
    const [unit, prec] = u < NS.us ? ["ns", 0] : u < NS.ms ? ["µs", 3] : ["ms", 6];
    const [frac, rest] = fraction(u, prec as number);
    out = `${rest}${frac}${unit}`;
  } else {
    const [frac, secs] = fraction(u, 9);
    u = secs;
    out = `${u % 60n}${frac}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/** The fractional digits of v/10^prec (trailing zeros dropped) and the integer part. */
function fraction(v: bigint, prec: number): [string, bigint] {
  const scale = 10n ** BigInt(prec);
  let digits = (v % scale).toString().padStart(prec, "0").replace(/0+$/, "");
  if (prec === 0) digits = "";
  return [digits === "" ? "" : `.${digits}`, v / scale];
}

/** Go's time.ParseDuration ("1m30s", "1.5h", "300ms"); throws with Go's message on bad input. */
export function parseGoDuration(s: string): bigint {
  const bad = () => new Error(`time: invalid duration ${goQuote(s)}`);
  let rest = s;
  let neg = false;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    neg = rest[0] === "-";
    rest = rest.slice(1);
  }
  if (rest === "0") return 0n;
  if (rest === "") throw bad();
  let total = 0n;
  while (rest !== "") {
    const m = /^(\d*)(?:\.(\d*))?([^\d.]+)/.exec(rest);
    if (!m || (m[1] === "" && (m[2] === undefined || m[2] === ""))) throw bad();
    const unitName = /^(ns|us|µs|μs|ms|s|m|h)/.exec(m[3]!)?.[1];
    if (!unitName)
      throw new Error(
        `time: unknown unit ${goQuote(m[3]!.replace(/[\d.].*$/, ""))} in duration ${goQuote(s)}`,
      );
    const unit = UNITS[unitName]!;
    const whole = BigInt(m[1] || "0") * unit;
    const fracDigits = m[2] ?? "";
    const frac = fracDigits === "" ? 0n : (BigInt(fracDigits) * unit) / 10n ** BigInt(fracDigits.length);
    total += whole + frac;
    rest = rest.slice(m[1]!.length + (m[2] !== undefined ? m[2].length + 1 : 0) + unitName.length);
  }
  return neg ? -total : total;
}
