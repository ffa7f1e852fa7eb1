// Instruction flags (`--from=x`, `--link`, `--mount=...` repeated): each instruction declares
// the flags it accepts, then parses its flag words against them. Unknown, repeated or
// value-less flags are errors that name the flag.

type FlagKind = "bool" | "string" | "strings";

/** A declared flag and what the instruction wrote for it. */
export interface Flag {
  readonly name: string;
  readonly kind: FlagKind;
  /** The value of a string flag, or "true"/"false" for a bool flag. */
  value: string;
  /** Every value of a repeatable flag, in order. */
  values: string[];
  used: boolean;
}

/** The flag words of one instruction, parsed against the flags it declares. */
export class Flags {
  private readonly args: readonly string[];
  private readonly declared = new Map<string, Flag>();

  constructor(args: readonly string[]) {
    this.args = args;
  }

  private add(name: string, kind: FlagKind, value: string): Flag {
    if (this.declared.has(name)) throw new Error(`flag ${name} declared twice`);
    const flag: Flag = { name, kind, value, values: [], used: false };
    this.declared.set(name, flag);
    return flag;
  }

  bool(name: string, def = false): Flag {
    return this.add(name, "bool", def ? "true" : "false");
  }
  string(name: string, def = ""): Flag {
    return this.add(name, "string", def);
  }
  /** A flag that may be given several times. */
  strings(name: string): Flag {
    return this.add(name, "strings", "");
  }

  /** Names of the flags that were given. */
  used(): string[] {
    return [...this.declared.values()].filter((f) => f.used).map((f) => f.name);
  }

  /** Parses the flag words; throws with BuildKit's messages, which name the flag. */
  parse(): void {
    for (const word of this.args) {
      if (!word.startsWith("--")) throw new Error(`Arg should start with -- : ${word}`);
      if (word === "--") return;
      const body = word.slice(2);
      const eq = body.indexOf("=");
      const name = eq >= 0 ? body.slice(0, eq) : body;
      const value = eq >= 0 ? body.slice(eq + 1) : "";
      const flag = this.declared.get(name);
      if (!flag) throw new Error(`Unknown flag: ${name}`);
      if (flag.used && flag.kind !== "strings") throw new Error(`Duplicate flag specified: ${name}`);
      flag.used = true;
      switch (flag.kind) {
        case "bool": {
          if (eq >= 0 && value === "") throw new Error(`Missing a value on flag: ${name}`);
          const lower = value.toLowerCase();
          if (lower === "") flag.value = "true";
          else if (lower === "true" || lower === "false") flag.value = lower;
          else throw new Error(`Expecting boolean value for flag ${name}, not: ${value}`);
          break;
        }
        case "string":
          if (eq < 0) throw new Error(`Missing a value on flag: ${name}`);
          flag.value = value;
          break;
        case "strings":
          if (eq < 0) throw new Error(`Missing a value on flag: ${name}`);
          flag.values.push(value);
          break;
      }
    }
  }
}
