// buildctl starts faster without undici: Node loads it (~20 ms here) the first time anything
// touches the global Headers, and connect creates Headers on every call. This small
// implementation of the Fetch Headers class (what connect uses of it) is installed first.
type Init = Iterable<[string, string]> | Record<string, string> | LightHeaders | undefined;

class LightHeaders {
  #map = new Map<string, string[]>();

  constructor(init?: Init) {
    if (init === undefined || init === null) return;
    if (init instanceof LightHeaders) {
      for (const [k, v] of init.entries()) this.append(k, v);
    } else if (typeof (init as Iterable<[string, string]>)[Symbol.iterator] === "function") {
      for (const [k, v] of init as Iterable<[string, string]>) this.append(k, v);
    } else {
      for (const [k, v] of Object.entries(init as Record<string, string>)) this.append(k, v);
    }
  }
  append(name: string, value: string): void {
    const k = String(name).toLowerCase();
    const list = this.#map.get(k);
    if (list) list.push(String(value));
    else this.#map.set(k, [String(value)]);
  }
  set(name: string, value: string): void {
    this.#map.set(String(name).toLowerCase(), [String(value)]);
  }
  get(name: string): string | null {
    const list = this.#map.get(String(name).toLowerCase());
    return list ? list.join(", ") : null;
  }
  getSetCookie(): string[] {
    return [...(this.#map.get("set-cookie") ?? [])];
  }
  has(name: string): boolean {
    return this.#map.has(String(name).toLowerCase());
  }
  delete(name: string): void {
    this.#map.delete(String(name).toLowerCase());
  }
  forEach(cb: (value: string, key: string, parent: LightHeaders) => void): void {
    for (const [k, v] of this.entries()) cb(v, k, this);
  }
  *entries(): IterableIterator<[string, string]> {
    for (const k of [...this.#map.keys()].sort()) yield [k, this.#map.get(k)!.join(", ")];
  }
  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
}

/** Replaces the global Headers (a lazy getter that loads undici) with the light one. */
export function installLightHeaders(): void {
  // Assigning through the getter would load undici; deleting the property does not.
  delete (globalThis as { Headers?: unknown }).Headers;
  (globalThis as { Headers?: unknown }).Headers = LightHeaders;
}
