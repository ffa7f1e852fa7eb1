// `--chown=user:group` and `--chmod=...` values: numeric ids or names (resolved in the target's
// /etc/passwd and /etc/group), octal or symbolic modes.
import type { Owner } from "../../../llb/index.ts";

function idOrName(s: string): number | string {
  if (s === "root") return 0;
  return /^[+-]?\d+$/.test(s) && Math.abs(Number(s)) <= 0x7fffffff ? Number(s) : s;
}

/** "1000", "app:app", "root:0" → an llb owner; undefined for "". */
export function parseOwner(chown: string): Owner | undefined {
  if (chown === "") return undefined;
  const colon = chown.indexOf(":");
  if (colon < 0) return { user: idOrName(chown) };
  return { user: idOrName(chown.slice(0, colon)), group: idOrName(chown.slice(colon + 1)) };
}

const SYMBOLIC = /^[ugoa]*([-+=]([rwxXst]*|[ugo]))+(,[ugoa]*([-+=]([rwxXst]*|[ugo]))+)*$/;

/** "0755" → 0o755, "u+x,g-w" → the string; undefined for "". Throws on anything else. */
export function parseChmod(chmod: string): number | string | undefined {
  if (chmod === "") return undefined;
  const bad = () =>
    new Error(`invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`);
  if (/^[0-7]+$/.test(chmod)) {
    const mode = Number.parseInt(chmod, 8);
    if (mode > 0o7777) throw bad();
    return mode;
  }
  if (/^\d+$/.test(chmod) || !SYMBOLIC.test(chmod)) throw bad();
  return chmod;
}
