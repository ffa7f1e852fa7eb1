// `RUN --mount=type=cache,target=/x,...`: the CSV option list of a mount, its keys and their
// checks. Mounts are read twice: when the Dockerfile is parsed (to catch unknown keys and
// malformed values early) and when the stage is converted, with variables expanded.
import type { Mount, MountType, ShareMode } from "./commands.ts";

const MOUNT_TYPES: readonly MountType[] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARE_MODES: readonly ShareMode[] = ["shared", "private", "locked"];
const KEYS = [
  "type",
  "from",
  "source",
  "target",
  "readonly",
  "id",
  "sharing",
  "required",
  "mode",
  "uid",
  "gid",
  "src",
  "dst",
  "destination",
  "ro",
  "rw",
  "readwrite",
  "size",
  "env",
];

/** Go's strconv.ParseBool. */
export function parseGoBool(s: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  return undefined;
}

/** Splits one CSV record like Go's encoding/csv (quoted fields, "" escapes, bare quotes refused). */
export function parseCSVRecord(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (line[i] === '"') {
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0)
          throw new Error(
            `parse error on line 1, column ${line.length + 1}: extraneous or missing " in quoted-field`,
          );
        field += line.slice(i, q);
        i = q + 1;
        if (line[i] === '"') {
          field += '"';
          i++;
          continue;
        }
        if (i < line.length && line[i] !== ",") {
          throw new Error(`parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
        }
        break;
      }
    } else {
      const comma = line.indexOf(",", i);
      field = comma < 0 ? line.slice(i) : line.slice(i, comma);
      const quote = field.indexOf('"');
      if (quote >= 0)
        throw new Error(`parse error on line 1, column ${i + quote + 1}: bare " in non-quoted-field`);
      i = comma < 0 ? line.length : comma;
    }
    fields.push(field);
    if (i >= line.length) return fields;
    i++; // the comma
  }
}

/** docker/go-units RAMInBytes: "64m", "1.5g", "512kb", "1024" (binary multiples). */
export function parseRAMInBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(s);
  if (!m) throw new Error(`invalid size: '${s}'`);
  const mult = { k: 1, m: 2, g: 3, t: 4, p: 5 }[(m[2] ?? "").toLowerCase()] ?? 0;
  const n = Number.parseFloat(m[1]!);
  if (Number.isNaN(n)) throw new Error(`invalid size: '${s}'`);
  return Math.trunc(n * 1024 ** mult);
}

function parseUint(value: string, base: 8 | 10, what: string): number {
  const re = base === 8 ? /^[0-7]+$/ : /^\d+$/;
  const n = re.test(value) ? Number.parseInt(value, base) : Number.NaN;
  if (Number.isNaN(n) || n > 0xffffffff) throw new Error(`invalid value ${value} for ${what}`);
  return n;
}

/**
 * Parses one mount. With `expand`, values are expanded and fully checked; without, only what
 * can be checked before expansion is (keys, and that `from` has no variables).
 */
export function parseMount(spec: string, expand?: (word: string) => string): Mount {
  let fields: string[];
  try {
    fields = parseCSVRecord(spec);
  } catch (e) {
    throw new Error(`failed to parse csv mounts: ${(e as Error).message}`);
  }
  const m: Mount = {
    type: "bind",
    from: "",
    source: "",
    target: "",
    readOnly: false,
    sizeLimit: 0,
    id: "",
    sharing: "",
    required: false,
  };
  let roAuto = true;
  for (const field of fields) {
    const eq = field.indexOf("=");
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    let value = eq < 0 ? "" : field.slice(eq + 1);
    if (eq < 0) {
      if (!expand) continue;
      switch (key) {
        case "readonly":
        case "ro":
          m.readOnly = true;
          roAuto = false;
          continue;
        case "readwrite":
        case "rw":
          m.readOnly = false;
          roAuto = false;
          continue;
        case "required":
          if (m.type !== "secret" && m.type !== "ssh") {
            throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
          }
          m.required = true;
          continue;
        default:
          throw new Error(`invalid field '${field}' must be a key=value pair`);
      }
    }
    if (!KEYS.includes(key)) throw new Error(`unexpected key '${key}' in '${field}'${suggestion(key, KEYS)}`);
    if (expand) {
      value = expand(value);
    } else {
      // Before expansion only `from` is read: it names a stage this one depends on.
      if (key !== "from") continue;
      if (/\$./.test(value)) {
        throw new Error(`'${key}' doesn't support variable expansion, define alias stage instead`);
      }
    }
    const bool = () => {
      const b = parseGoBool(value);
      if (b === undefined) throw new Error(`invalid value for ${key}: ${value}`);
      return b;
    };
    switch (key) {
      case "type": {
        const t = value.toLowerCase() as MountType;
        if (!MOUNT_TYPES.includes(t)) {
          throw new Error(`unsupported mount type ${JSON.stringify(value)}${suggestion(value, MOUNT_TYPES)}`);
        }
        m.type = t;
        break;
      }
      case "from":
        m.from = value;
        break;
      case "source":
      case "src":
        m.source = value;
        break;
      case "target":
      case "dst":
      case "destination":
        m.target = value;
        break;
      case "readonly":
      case "ro":
        m.readOnly = bool();
        roAuto = false;
        break;
      case "readwrite":
      case "rw":
        m.readOnly = !bool();
        roAuto = false;
        break;
      case "required":
        if (m.type !== "secret" && m.type !== "ssh") {
          throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        }
        m.required = bool();
        break;
      case "size":
        if (m.type !== "tmpfs") throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        try {
          m.sizeLimit = parseRAMInBytes(value);
        } catch {
          throw new Error(`invalid value for ${key}: ${value}`);
        }
        break;
      case "id":
        m.id = value;
        break;
      case "sharing": {
        const s = value.toLowerCase() as ShareMode;
        if (!SHARE_MODES.includes(s)) {
          throw new Error(
            `unsupported sharing value ${JSON.stringify(value)}${suggestion(value, SHARE_MODES)}`,
          );
        }
        m.sharing = s;
        break;
      }
      case "mode":
        m.mode = parseUint(value, 8, "mode");
        break;
      case "uid":
        m.uid = parseUint(value, 10, "uid");
        break;
      case "gid":
        m.gid = parseUint(value, 10, "gid");
        break;
      case "env":
        m.env = value;
        break;
    }
  }
  if (expand) validateMount(m, roAuto);
  return m;
}

function validateMount(m: Mount, roAuto: boolean): void {
  if (m.type !== "secret" && m.type !== "ssh" && m.type !== "cache") {
    for (const k of ["mode", "uid", "gid"] as const) {
      if (m[k] !== undefined) throw new Error(`${k} not allowed for ${JSON.stringify(m.type)} type mounts`);
    }
  }
  if (roAuto) m.readOnly = m.type !== "cache" && m.type !== "tmpfs";
  if (m.type === "secret") {
    if (m.from !== "") throw new Error("secret mount should not have a from");
    if (m.sharing !== "") throw new Error("secret mount should not define sharing");
    if (m.source === "" && m.target === "" && m.id === "" && m.env === undefined) {
      throw new Error("invalid secret mount. one of source, target required");
    }
    if (m.source !== "" && m.id !== "") throw new Error("both source and id can't be set");
  }
  if (m.sharing !== "" && m.type !== "cache")
    throw new Error(`invalid cache sharing set for ${m.type} mount`);
  if (m.env !== undefined && m.type !== "secret")
    throw new Error(`env not allowed for ${JSON.stringify(m.type)} type mounts`);
}

/** " (did you mean x?)" when `value` is a near miss of one of `options`. */
export function suggestion(value: string, options: readonly string[]): string {
  const best = closest(value, options);
  return best === undefined ? "" : ` (did you mean ${best}?)`;
}

/** The option `value` is a near miss of (case-insensitive), if any. */
export function closest(value: string, options: readonly string[]): string | undefined {
  const v = value.toLowerCase();
  let best: string | undefined;
  let bestDist = Number.POSITIVE_INFINITY;
  for (const o of options) {
    const d = levenshtein(v, o.toLowerCase());
    if (d < bestDist) {
      best = o;
      bestDist = d;
    }
  }
  if (best === undefined || bestDist === 0 || bestDist > Math.max(1, Math.floor(v.length / 3)))
    return undefined;
  return best;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
