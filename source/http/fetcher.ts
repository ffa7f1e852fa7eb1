// The http source's engine: downloads into the content store, verified against the op's
// checksum before anything is kept; re-fetches as conditional GETs using what the last response
// for the URL said (ETag, Last-Modified); and writes a stored body out as one file.
import { createHash, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, lstat, open, unlink } from "node:fs/promises";
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import type { ContentStore } from "../../content/store.ts";
import type { Digest } from "../../util/digest.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { HttpSourceError } from "./errors.ts";
import { checkHttpUrl, fileNameFromContentDisposition, isSafeFileName } from "./identifier.ts";
import { ResponseTable, type StoredResponse } from "./responses.ts";

/** How to build an HttpFetcher. */
export type HttpFetcherOptions = {
  store: ContentStore;
  /** The daemon's database; the fetcher keeps its `source_http_responses` table there. */
  db: DatabaseSync;
  /** Redirects followed before giving up (default 10). */
  maxRedirects?: number;
  /** Largest body accepted (default 16 GiB); a bigger one fails before it fills the disk. */
  maxBytes?: number;
  /** A connection silent for this long fails the download (default 5 minutes). */
  idleTimeoutMs?: number;
  now?: () => number;
};

/** Progress of one download. */
export type HttpProgress = { current: number; total?: number };

/** Options of one `fetch`. */
export type HttpFetchOptions = {
  /** The body's expected digest: when the store has it nothing is fetched; a mismatch keeps nothing. */
  checksum?: string;
  signal?: AbortSignal;
  /** Called as bytes arrive (at most every 100ms, and at the end). */
  onProgress?: (p: HttpProgress) => void;
  /** Extra request headers (e.g. Authorization from a session secret); dropped on cross-origin redirects. */
  headers?: Record<string, string>;
  /** Overrides the fetcher's size limit. */
  maxBytes?: number;
  /** A content-store lease that will hold the blob (take it before fetching). */
  lease?: string;
};

/** What a fetch produced. */
export type HttpFetchResult = {
  /** The sha256 of the body: the blob in the content store. */
  digest: Digest;
  size: number;
  /** The file name from the response's Content-Disposition, when it gave a safe one. */
  filename?: string;
  /** The response's Last-Modified (the mtime the file should get). */
  lastModified?: string;
  etag?: string;
  /** True when no body was downloaded: the checksum was in the store, or the server said 304. */
  cached: boolean;
};

/** How `writeFile` lays the file down. */
export type WriteFileOptions = {
  filename: string;
  /** Mode bits (default 0o600). */
  perm?: number;
  uid?: number;
  gid?: number;
  /** Default: the epoch, BuildKit's mtime for responses without Last-Modified. */
  mtime?: Date;
};

const DEFAULT_MAX_BYTES = 16 * 1024 ** 3;
const DEFAULT_MAX_REDIRECTS = 10;
const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
const PROGRESS_INTERVAL_MS = 100;

/** Downloads http sources into the content store. One per daemon: the per-URL lock lives here. */
export class HttpFetcher {
  #store: ContentStore;
  #responses: ResponseTable;
  #locks = new KeyedLock();
  #maxRedirects: number;
  #maxBytes: number;
  #idleTimeoutMs: number;
  #now: () => number;

  constructor(opts: HttpFetcherOptions) {
    this.#store = opts.store;
    this.#responses = new ResponseTable(opts.db);
    this.#maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Makes sure the content store has the body of `url` and returns its digest: no network when
   * `checksum` names a stored blob; a conditional GET when an earlier response had validators
   * (304 → the stored blob); else a download, verified against `checksum` before it is kept.
   * Concurrent fetches of one URL run one after the other, so the second can be a 304.
   */
  async fetch(url: string, opts: HttpFetchOptions = {}): Promise<HttpFetchResult> {
    checkHttpUrl(url, "downloading");
    const checksum = opts.checksum;
    if (checksum !== undefined && !/^sha256:[0-9a-f]{64}$/.test(checksum)) {
      throw new HttpSourceError(
        "invalid-argument",
        `downloading ${url}: invalid checksum ${JSON.stringify(checksum)}`,
      );
    }
    return this.#locks.run(
      url,
      () => this.#fetchLocked(url, checksum as Digest | undefined, opts),
      opts.signal,
    );
  }

  async #fetchLocked(
    url: string,
    checksum: Digest | undefined,
    opts: HttpFetchOptions,
  ): Promise<HttpFetchResult> {
    const previous = this.#responses.get(url);
    if (checksum !== undefined) {
      const info = await this.#held(checksum, opts.lease);
      if (info !== undefined) {
        const known = previous?.digest === checksum ? previous : undefined;
        return withOptional({ digest: checksum, size: info.size, cached: true }, known);
      }
    }
    // Only a previous body that is still stored (and could match the checksum) can answer a 304.
    let conditional: StoredResponse | undefined;
    if (
      previous !== undefined &&
      (previous.etag !== undefined || previous.lastModified !== undefined) &&
      (checksum === undefined || previous.digest === checksum) &&
      (await this.#held(previous.digest, opts.lease)) !== undefined
    ) {
      conditional = previous;
    }
    const headers: Record<string, string> = {};
    if (conditional?.etag !== undefined) headers["if-none-match"] = conditional.etag;
    if (conditional?.lastModified !== undefined) headers["if-modified-since"] = conditional.lastModified;

    const res = await this.#get(url, opts, headers);
    try {
      if (res.statusCode === 304) {
        if (conditional === undefined) {
          throw new HttpSourceError(
            "http-status",
            `downloading ${url}: the server answered 304 Not Modified to a plain GET`,
          );
        }
        const updated: StoredResponse = { ...conditional, fetchedAt: this.#now() };
        const etag = header(res, "etag");
        const lastModified = header(res, "last-modified");
        if (etag !== undefined) updated.etag = etag;
        if (lastModified !== undefined) updated.lastModified = lastModified;
        this.#responses.put(updated);
        return withOptional({ digest: updated.digest, size: updated.size, cached: true }, updated);
      }
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        throw new HttpSourceError(
          status === 404 || status === 410 ? "not-found" : "http-status",
          `downloading ${url}: the server answered ${status} ${res.statusMessage ?? ""}`.trimEnd(),
        );
      }
      const body = await this.#download(url, res, checksum, opts);
      const stored: StoredResponse = { url, digest: body.digest, size: body.size, fetchedAt: this.#now() };
      const etag = header(res, "etag");
      const lastModified = header(res, "last-modified");
      const filename = fileNameFromContentDisposition(header(res, "content-disposition"));
      if (etag !== undefined) stored.etag = etag;
      if (lastModified !== undefined) stored.lastModified = lastModified;
      if (filename !== undefined) stored.filename = filename;
      // Without validators the next fetch must download again: forget any older answer.
      if (etag !== undefined || lastModified !== undefined) this.#responses.put(stored);
      else this.#responses.delete(url);
      return withOptional({ digest: body.digest, size: body.size, cached: false }, stored);
    } finally {
      res.resume();
      res.destroy();
    }
  }

  /**
   * Writes a stored blob as `targetDir/filename` with the given mode, owner and mtime. The name is
   * one path component and the file must not exist; nothing outside `targetDir` is touched.
   */
  async writeFile(digest: string, targetDir: string, opts: WriteFileOptions): Promise<string> {
    const doing = `writing ${digest} to ${targetDir}`;
    if (!isSafeFileName(opts.filename)) {
      throw new HttpSourceError(
        "invalid-argument",
        `${doing}: unsafe file name ${JSON.stringify(opts.filename)}`,
      );
    }
    const perm = opts.perm ?? 0o600;
    if (!Number.isInteger(perm) || perm < 0 || perm > 0o7777) {
      throw new HttpSourceError("invalid-argument", `${doing}: ${perm} is not a file mode`);
    }
    const dir = await lstat(targetDir).catch(() => undefined);
    if (!dir?.isDirectory()) throw new HttpSourceError("invalid-argument", `${doing}: not a directory`);
    const path = join(targetDir, opts.filename);
    const source = await this.#store.readStream(digest);
    let fh: FileHandle;
    try {
      fh = await open(
        path,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
    } catch (e) {
      source.destroy();
      throw e;
    }
    let written = false;
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
      }
      // chown first: it clears set-id bits that chmod then sets.
      await fh.chown(opts.uid ?? 0, opts.gid ?? 0);
      await fh.chmod(perm);
      const mtime = opts.mtime ?? new Date(0);
      await fh.utimes(mtime, mtime);
      written = true;
    } finally {
      source.destroy();
      await fh.close();
      // A half-written file must not end up in a snapshot.
      if (!written) await unlink(path).catch(() => {});
    }
    return path;
  }

  /** The blob's info when the store has it, after adding it to `lease` so gc keeps it. */
  async #held(digest: Digest, lease: string | undefined) {
    if (lease !== undefined) this.#store.addLeaseResource(lease, digest);
    return this.#store.info(digest);
  }

  /** GETs `url`, following redirects; caller headers never leave the original origin. */
  async #get(
    url: string,
    opts: HttpFetchOptions,
    conditional: Record<string, string>,
  ): Promise<IncomingMessage> {
    const origin = new URL(url).origin;
    let current = new URL(url);
    for (let redirects = 0; ; redirects++) {
      const headers: Record<string, string> = {
        "user-agent": "buildd",
        "accept-encoding": "identity",
        ...conditional,
        ...(current.origin === origin ? lowerKeys(opts.headers ?? {}) : {}),
      };
      const res = await this.#request(current, headers, url, opts.signal);
      const status = res.statusCode ?? 0;
      const location = header(res, "location");
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
      res.resume();
      res.destroy();
      if (redirects >= this.#maxRedirects) {
        throw new HttpSourceError(
          "http-status",
          `downloading ${url}: more than ${this.#maxRedirects} redirects`,
        );
      }
      const next = new URL(location, current);
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new HttpSourceError(
          "http-status",
          `downloading ${url}: redirected to a non-http URL ${next.href}`,
        );
      }
      current = next;
    }
  }

  #request(
    url: URL,
    headers: Record<string, string>,
    original: string,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    signal?.throwIfAborted();
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method: "GET", headers, signal });
      let response: IncomingMessage | undefined;
      req.setTimeout(this.#idleTimeoutMs, () => {
        const e = new HttpSourceError(
          "network",
          `downloading ${original}: no data from the server for ${this.#idleTimeoutMs}ms`,
        );
        // Once the body is streaming, its reader must see this error, not a bare reset.
        if (response) response.destroy(e);
        else req.destroy(e);
      });
      req.once("response", (res) => {
        response = res;
      });
      req.once("response", resolve);
      req.once("error", (e) => reject(networkError(original, e, signal)));
      req.end();
    });
  }

  /** Streams the body into an ingest; aborts it (nothing kept) on any error or checksum mismatch. */
  async #download(
    url: string,
    res: IncomingMessage,
    checksum: Digest | undefined,
    opts: HttpFetchOptions,
  ): Promise<{ digest: Digest; size: number }> {
    const maxBytes = opts.maxBytes ?? this.#maxBytes;
    const lengthHeader = header(res, "content-length");
    const expected =
      lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    if (expected !== undefined && expected > maxBytes) {
      throw new HttpSourceError(
        "too-large",
        `downloading ${url}: ${expected} bytes is over the limit of ${maxBytes}`,
      );
    }
    const writer = await this.#store.writer(
      `http-${randomUUID()}`,
      opts.lease === undefined ? {} : { lease: opts.lease },
    );
    const hash = createHash("sha256");
    let size = 0;
    let lastReport = 0;
    const report = (force: boolean) => {
      if (!opts.onProgress) return;
      const now = Date.now();
      if (!force && now - lastReport < PROGRESS_INTERVAL_MS) return;
      lastReport = now;
      opts.onProgress(expected === undefined ? { current: size } : { current: size, total: expected });
    };
    try {
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > maxBytes) {
            throw new HttpSourceError(
              "too-large",
              `downloading ${url}: the body is over the limit of ${maxBytes} bytes`,
            );
          }
          hash.update(chunk);
          await writer.write(chunk);
          report(false);
        }
      } catch (e) {
        if (e instanceof HttpSourceError) throw e;
        throw networkError(url, e as Error, opts.signal, size);
      }
      if (expected !== undefined && size !== expected) {
        throw new HttpSourceError(
          "truncated",
          `downloading ${url}: the connection ended after ${size} of ${expected} bytes; nothing was kept, try again`,
        );
      }
      report(true);
      const digest: Digest = `sha256:${hash.digest("hex")}`;
      if (checksum !== undefined && digest !== checksum) {
        throw new HttpSourceError(
          "checksum-mismatch",
          `checksum mismatch for ${url}: expected ${checksum}, got ${digest}; nothing was kept (is the checksum or the URL wrong?)`,
        );
      }
      return await writer.commit({ expectedDigest: digest, expectedSize: size });
    } catch (e) {
      await writer.abort().catch(() => {});
      throw e;
    }
  }
}

function networkError(
  url: string,
  e: Error,
  signal: AbortSignal | undefined,
  received?: number,
): HttpSourceError {
  if (e instanceof HttpSourceError) return e;
  if (signal?.aborted)
    return new HttpSourceError("cancelled", `downloading ${url}: cancelled`, { cause: signal.reason });
  const code = (e as NodeJS.ErrnoException).code;
  if (received !== undefined) {
    return new HttpSourceError(
      "truncated",
      `downloading ${url}: the connection failed after ${received} bytes (${code ?? e.message}); nothing was kept, try again`,
      { cause: e },
    );
  }
  return new HttpSourceError("network", `downloading ${url}: ${code ? `${code}: ` : ""}${e.message}`, {
    cause: e,
  });
}

function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

function withOptional(base: HttpFetchResult, r: StoredResponse | undefined): HttpFetchResult {
  if (r?.filename !== undefined) base.filename = r.filename;
  if (r?.lastModified !== undefined) base.lastModified = r.lastModified;
  if (r?.etag !== undefined) base.etag = r.etag;
  return base;
}
