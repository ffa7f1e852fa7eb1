// Entry names and link targets from a layer are hostile input: these turn them into path
// components inside the layer root, or refuse them.
//
// What we accept, and why (containerd, which BuildKit unpacks with, was the reference):
// - A leading "/" is dropped: tar names are relative to the archive root, and containerd and
//   docker both read "/etc/x" as "etc/x".
// - ".." is resolved lexically, and a name that climbs above the root is refused. containerd
//   clamps such names at the root instead; docker refuses them ("... is outside of ..."). No
//   layer a real tool writes has one, so refusing is the safer and clearer of the two.

/** A name that cannot be placed inside the root; the caller adds the layer and entry. */
export class UnsafeNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsafeNameError";
  }
}

/**
 * The components of an entry name or hard link target, relative to the layer root; [] is the
 * root itself. Throws when the name climbs out of the root or holds a NUL.
 */
export function entryComponents(name: string): string[] {
  if (name.includes("\0")) throw new UnsafeNameError("the name contains a NUL byte");
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) throw new UnsafeNameError("the path escapes from the layer root with '..'");
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}
