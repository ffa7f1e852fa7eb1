// chmod(1) mode strings for COPY --chmod: octal ("755") or symbolic ("u+x,g-w", "go=u-w", "a+X"),
// with BSD setmode semantics and a zero umask, as BuildKit applies them (tonistiigi/dchapes-mode).

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;
const RWXU = 0o700;
const RWXG = 0o070;
const RWXO = 0o007;
/** The bits "=" may clear: all permission and set-id bits, but not sticky unless asked with "t". */
const STANDARD = S_ISUID | S_ISGID | RWXU | RWXG | RWXO;
const ALL = 0o7777;

type Command =
  | { op: "+" | "-" | "X"; bits: number }
  | {
      op: "copy";
      from: "u" | "g" | "o";
      to: { u: boolean; g: boolean; o: boolean };
      set: boolean;
      clear: boolean;
    };

/** Applies a parsed mode string to a file's permission bits; `isDir` matters for "X". */
export type ModeChange = (mode: number, isDir: boolean) => number;

function syntaxError(s: string, why: string): Error {
  return new Error(
    `invalid chmod mode ${JSON.stringify(s)}: ${why}; use octal ("755") or symbolic ("u+x,g-w")`,
  );
}

/** Parses an octal or symbolic chmod mode string; throws on invalid syntax. */
export function parseModeString(s: string): ModeChange {
  const cmds = parseCommands(s);
  return (mode, isDir) => applyCommands(cmds, mode & ALL, isDir);
}

function parseCommands(s: string): Command[] {
  if (s === "") throw syntaxError(s, "empty");
  if (/^[0-9]/.test(s)) {
    if (!/^[0-7]+$/.test(s)) throw syntaxError(s, "not an octal number");
    const v = Number.parseInt(s, 8);
    if (v > ALL) throw syntaxError(s, "bits beyond 07777");
    return [
      { op: "-", bits: ALL },
      { op: "+", bits: v },
    ];
  }
  const cmds: Command[] = [];
  const add = (op: "+" | "-" | "=" | "X", who: number, arg: number): void => {
    if (op === "=") {
      cmds.push({ op: "-", bits: who !== 0 ? who : STANDARD });
      op = "+";
    }
    cmds.push({ op, bits: who !== 0 ? who & arg : arg & ALL });
  };
  const addCopy = (from: "u" | "g" | "o", who: number, op: "+" | "-" | "="): void => {
    const to =
      who !== 0 ? { u: (who & 0o400) !== 0, g: (who & 0o040) !== 0, o: (who & 0o004) !== 0 } : ALL_CLASSES;
    cmds.push({ op: "copy", from, to, set: op !== "-", clear: op !== "+" });
  };
  let i = 0;
  for (;;) {
    let who = 0;
    for (; i < s.length && "augo".includes(s[i]!); i++) {
      const c = s[i];
      who |= c === "a" ? STANDARD : c === "u" ? S_ISUID | RWXU : c === "g" ? S_ISGID | RWXG : RWXO;
    }
    let equalDone = false;
    // One clause may hold several operations: "u+r-w".
    for (;;) {
      const op = s[i++];
      if (op !== "+" && op !== "-" && op !== "=") throw syntaxError(s, `expected "+", "-" or "=" at ${i}`);
      if (op === "=") equalDone = false;
      who &= ~S_ISVTX;
      let perm = 0;
      let permX = 0;
      for (; ; i++) {
        const b = s[i];
        if (b === "r") perm |= 0o444;
        else if (b === "w") perm |= 0o222;
        else if (b === "x") perm |= 0o111;
        else if (b === "X") {
          // BSD honours X only with "+".
          if (op === "+") permX = 0o111;
        } else if (b === "s") {
          // Set-id bits mean nothing for "other".
          if (who === 0 || (who & ~RWXO) !== 0) perm |= S_ISUID | S_ISGID;
        } else if (b === "t") {
          if (who === 0 || (who & ~RWXO) !== 0) {
            who |= S_ISVTX;
            perm |= S_ISVTX;
          }
        } else if (b === "u" || b === "g" || b === "o") {
          if (perm !== 0) add(op, who, perm);
          perm = 0;
          if (op === "=") equalDone = true;
          if (permX !== 0) add("X", who, permX);
          permX = 0;
          addCopy(b, who, op);
        } else {
          if (perm !== 0 || (op === "=" && !equalDone)) {
            if (op === "=") equalDone = true;
            add(op, who, perm);
          }
          if (permX !== 0) add("X", who, permX);
          break;
        }
      }
      if (i >= s.length || s[i] === ",") break;
    }
    if (i >= s.length) return cmds;
    i++;
    if (i >= s.length) throw syntaxError(s, "trailing comma");
  }
}

const ALL_CLASSES = { u: true, g: true, o: true };

function applyCommands(cmds: Command[], original: number, isDir: boolean): number {
  let mode = original;
  for (const c of cmds) {
    switch (c.op) {
      case "+":
        mode |= c.bits;
        break;
      case "-":
        mode &= ~c.bits;
        break;
      case "X":
        // Judged on the mode before any change, as BSD does.
        if ((original & 0o111) !== 0 || isDir) mode |= c.bits;
        break;
      case "copy": {
        const value = c.from === "u" ? (mode & RWXU) >> 6 : c.from === "g" ? (mode & RWXG) >> 3 : mode & RWXO;
        const clearValue = c.set ? 0o7 : value;
        if (c.clear) {
          if (c.to.u) mode &= ~(clearValue << 6);
          if (c.to.g) mode &= ~(clearValue << 3);
          if (c.to.o) mode &= ~clearValue;
        }
        if (c.set) {
          if (c.to.u) mode |= value << 6;
          if (c.to.g) mode |= value << 3;
          if (c.to.o) mode |= value;
        }
        break;
      }
    }
  }
  return mode & ALL;
}
