// Parsing buildctl's key=value and CSV option values, with errors naming the flag.

/** "key=value" → [key, value]; the value may contain "=". */
export function parseKeyValue(s: string, flag: string): [string, string] {
  const i = s.indexOf("=");
  if (i <= 0) throw new Error(`${flag} ${JSON.stringify(s)}: want key=value`);
  return [s.slice(0, i), s.slice(i + 1)];
}

/**
 * "type=local,dest=out,\"name=a,b\"" → {type: "local", dest: "out", name: "a,b"}: comma-separated
 * key=value pairs, a field may be double-quoted (as in a CSV line) to hold commas.
 */
export function parseCSV(s: string, flag: string): Record<string, string> {
  const fields: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      if (quoted && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === "," && !quoted) {
      fields.push(cur);
      cur = "";
    } else cur += c;
  }
  if (quoted) throw new Error(`${flag} ${JSON.stringify(s)}: unterminated quote`);
  fields.push(cur);
  const out: Record<string, string> = {};
  for (const f of fields) {
    if (f.trim() === "") continue;
    const [k, v] = f.includes("=") ? parseKeyValue(f.trim(), flag) : [f.trim(), "true"];
    out[k.toLowerCase() === k ? k : k] = v;
  }
  return out;
}
