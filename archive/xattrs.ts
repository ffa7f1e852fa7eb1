// Extended attributes of a whole tree in one go, for writing layers: file capabilities
// (security.capability), user.* attributes, and overlayfs' own markers (trusted.overlay.opaque).
// One getfattr process dumps the tree; asking per file (the perl helper of apply.ts) would cost
// a round trip for each of thousands of files that mostly have none.
import { spawn } from "node:child_process";
import { relative } from "node:path";

/** Attributes by path relative to the dumped root ("" is the root itself), values as bytes. */
export type TreeXattrs = Map<string, Map<string, Buffer>>;

/** Reads every extended attribute under `root`, never following symlinks. */
export async function readTreeXattrs(root: string, signal?: AbortSignal): Promise<TreeXattrs> {
  const child = spawn(
    "getfattr",
    ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", root],
    {
      stdio: ["ignore", "pipe", "pipe"],
      signal,
    },
  );
  const out: Buffer[] = [];
  let err = "";
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", (e) =>
      reject(
        new Error(
          `reading extended attributes of ${root}: cannot run getfattr (${e.message}); install the attr package`,
        ),
      ),
    );
    child.on("close", resolve);
  });
  // getfattr exits 1 when a file vanished or refused; the attributes it could read are still right,
  // but a layer written from half the attributes would be wrong, so refuse.
  if (code !== 0) {
    throw new Error(`reading extended attributes of ${root}: getfattr exited with ${code}: ${err.trim()}`);
  }
  return parseGetfattrDump(Buffer.concat(out), root);
}

/** Parses `getfattr -d -e hex --absolute-names` output; paths are made relative to `root`. */
export function parseGetfattrDump(dump: Buffer, root: string): TreeXattrs {
  const result: TreeXattrs = new Map();
  let current: Map<string, Buffer> | undefined;
  for (const raw of splitLines(dump)) {
    if (raw.length === 0) {
      current = undefined;
      continue;
    }
    const line = unescapeGetfattr(raw);
    if (line.startsWith("# file: ")) {
      const rel = relative(root, line.slice("# file: ".length));
      current = new Map();
      result.set(rel, current);
      continue;
    }
    if (!current || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    const name = eq < 0 ? line : line.slice(0, eq);
    const value = eq < 0 ? "" : line.slice(eq + 1);
    current.set(name, decodeValue(value, name));
  }
  return result;
}

function splitLines(buf: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, start);
    if (nl < 0) {
      if (start < buf.length) lines.push(buf.subarray(start));
      return lines;
    }
    lines.push(buf.subarray(start, nl));
    start = nl + 1;
  }
}

/** getfattr writes control characters, spaces it must protect and backslashes as \ooo. */
function unescapeGetfattr(line: Buffer): string {
  const bytes: number[] = [];
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === 0x5c && i + 3 < line.length && /^[0-7]{3}$/.test(line.toString("latin1", i + 1, i + 4))) {
      bytes.push(Number.parseInt(line.toString("latin1", i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(c);
  }
  return Buffer.from(bytes).toString("utf8");
}

function decodeValue(value: string, name: string): Buffer {
  if (value === "") return Buffer.alloc(0);
  if (value.startsWith("0x")) return Buffer.from(value.slice(2), "hex");
  if (value.startsWith("0s")) return Buffer.from(value.slice(2), "base64");
  if (value.startsWith('"') && value.endsWith('"')) return Buffer.from(value.slice(1, -1));
  throw new Error(`reading extended attribute ${name}: unexpected getfattr value ${JSON.stringify(value)}`);
}
