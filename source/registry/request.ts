// One registry API request, done properly: authorization (answering 401 challenges once),
// bounded retries with backoff for connection resets and 429/5xx, redirects (blob GETs often
// go to a storage backend, which must not see the registry's token), and errors that name the
// image, say what went wrong and what to do.
import { setTimeout as sleep } from "node:timers/promises";
import { logger } from "../../util/log.ts";
import { type AuthSession, unauthorized } from "./auth.ts";
import { describeErrorBody, RegistryError } from "./errors.ts";
import {
  discard,
  type HttpResponse,
  type HttpTransport,
  isTlsError,
  isTransientNetworkError,
  readBody,
  type RequestBody,
} from "./http.ts";

/** A registry host and repository to talk to: the image's own, or a mirror of it. */
export type Endpoint = {
  /** The host as configured and as in image references ("docker.io", "127.0.0.1:5000", a mirror). */
  host: string;
  /** The repository path in that registry ("library/busybox"). */
  repo: string;
  mirror: boolean;
};

/** The context of one client operation: what it is doing (for errors), its auth session, its signal. */
export type Operation = {
  /** "resolving 127.0.0.1:5000/app:latest", the prefix of every error. */
  doing: string;
  /** The image's repository as users write it ("127.0.0.1:5000/app"), for "authentication required for …". */
  image: string;
  auth: AuthSession;
  signal?: AbortSignal;
};

/** One request's details. */
export type RegistryRequest = {
  method: string;
  /** The API path ("/v2/<repo>/manifests/<ref>"), or an absolute URL (an upload Location). */
  path: string | URL;
  headers?: Record<string, string>;
  body?: RequestBody;
  contentLength?: number;
  /** Token scopes ("repository:app:pull"). */
  scopes: string[];
  /** Repeat on connection resets and 429/5xx: only for requests that are safe to repeat. Default true. */
  retry?: boolean;
  /** Follow 3xx redirects (GET/HEAD only). Default true. */
  followRedirects?: boolean;
};

/** Retry policy: attempts in all (the first included), and the first backoff delay. */
export type RetryPolicy = { attempts: number; baseDelayMs: number; maxDelayMs: number };

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 250, maxDelayMs: 5_000 };

const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EADDRNOTAVAIL",
]);
const MAX_ERROR_BODY = 64 * 1024;
const log = logger({ component: "registry" });

/** Sends registry requests with auth, retries and redirects. */
export class Requester {
  readonly transport: HttpTransport;
  readonly retry: RetryPolicy;

  constructor(transport: HttpTransport, retry: RetryPolicy = DEFAULT_RETRY) {
    this.transport = transport;
    this.retry = retry;
  }

  /** Sends `req` to `ep`; resolves with any final status (callers judge it), rejects on network failure. */
  async send(ep: Endpoint, req: RegistryRequest, op: Operation): Promise<HttpResponse> {
    let url: URL | undefined = typeof req.path === "string" ? undefined : req.path;
    let authRetried = false;
    let attempt = 1;
    let redirects = 0;
    let foreign = false;
    for (;;) {
      op.signal?.throwIfAborted();
      const authorization = foreign ? undefined : await op.auth.authorization(ep.host, req.scopes, op.signal);
      const http = {
        method: req.method,
        headers: { ...req.headers, ...(authorization ? { authorization } : {}) },
        body: req.body,
        contentLength: req.contentLength,
        signal: op.signal,
      };
      let res: HttpResponse;
      try {
        res =
          url === undefined
            ? await this.transport.sendToRegistry(ep.host, req.path as string, http)
            : await this.transport.send(url, http, foreign ? url.host : ep.host);
      } catch (e) {
        if (req.retry !== false && isTransientNetworkError(e) && attempt < this.retry.attempts) {
          log.debug("registry request failed, retrying", { host: ep.host, attempt, error: e });
          await this.backoff(attempt++, undefined, op.signal);
          continue;
        }
        throw networkError(e, ep.host, op);
      }
      if (res.status === 401 && !foreign) {
        const challenge = res.headers["www-authenticate"];
        await discard(res);
        if (authRetried)
          throw unauthorized(op.doing, op.image, ep.host, await op.auth.hasCredentials(ep.host));
        if (authorization !== undefined) await op.auth.invalidate(ep.host, req.scopes);
        await op.auth.answer(ep.host, challenge, req.scopes, op);
        authRetried = true;
        continue;
      }
      if (
        REDIRECTS.has(res.status) &&
        req.followRedirects !== false &&
        (req.method === "GET" || req.method === "HEAD")
      ) {
        const location = res.headers.location;
        await discard(res);
        if (location === undefined || ++redirects > MAX_REDIRECTS) {
          throw new RegistryError(
            "server",
            `${op.doing}: ${ep.host} sent ${redirects > MAX_REDIRECTS ? "too many redirects" : "a redirect without a Location"}`,
            {
              status: res.status,
            },
          );
        }
        const next = new URL(location, res.url);
        // Credentials stay with the registry; a storage backend gets a signed URL, not our token.
        foreign = foreign || next.origin !== res.url.origin;
        url = next;
        continue;
      }
      if (req.retry !== false && RETRY_STATUSES.has(res.status) && attempt < this.retry.attempts) {
        const retryAfter = Number(res.headers["retry-after"]);
        await discard(res);
        log.debug("registry answered with a retryable status", {
          host: ep.host,
          status: res.status,
          attempt,
        });
        await this.backoff(attempt++, Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined, op.signal);
        continue;
      }
      return res;
    }
  }

  /** Waits before attempt `attempt + 1`: exponential with jitter, or what Retry-After asked (capped). */
  async backoff(attempt: number, requestedMs: number | undefined, signal?: AbortSignal): Promise<void> {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const delay =
      requestedMs !== undefined ? Math.min(requestedMs, 30_000) : exp / 2 + Math.random() * (exp / 2);
    await sleep(delay, undefined, { signal });
  }
}

/** The error for a final status that is not what the caller wanted: not found, denied, or a server error. */
export async function statusError(res: HttpResponse, op: Operation, what: string): Promise<RegistryError> {
  let detail = "";
  try {
    detail = describeErrorBody(await readBody(res, MAX_ERROR_BODY, "reading an error"));
  } catch {
    res.body.destroy();
  }
  const suffix = detail ? ` (${detail})` : "";
  if (res.status === 404)
    return new RegistryError("not-found", `${op.doing}: not found: ${what}${suffix}`, { status: 404 });
  if (res.status === 403) {
    return new RegistryError(
      "denied",
      `${op.doing}: denied: the registry refused access to ${op.image}${suffix}`,
      { status: 403 },
    );
  }
  return new RegistryError("server", `${op.doing}: ${what}: the registry answered ${res.status}${suffix}`, {
    status: res.status,
  });
}

/** A RegistryError for a request that never got an answer; abort errors pass through as they are. */
export function networkError(e: unknown, host: string, op: Operation): unknown {
  const err = e as NodeJS.ErrnoException;
  // A cancelled operation reports its own reason, not a network problem.
  if (err?.name === "AbortError" || e instanceof RegistryError || op.signal?.aborted) return e;
  const code = err?.code ?? "";
  if (isTlsError(e)) {
    return new RegistryError(
      "tls",
      `${op.doing}: TLS with ${host} failed: ${err.message}; for a self-signed certificate add its CA (ca = ["/path/ca.pem"]) or set insecure = true under [registry."${host}"] in buildd.toml (http = true for a plain-http registry)`,
      { cause: e },
    );
  }
  if (UNREACHABLE_CODES.has(code)) {
    return new RegistryError(
      "unreachable",
      `${op.doing}: cannot reach the registry ${host}: ${err.message}; check the host name and that the registry is running`,
      { cause: e },
    );
  }
  return new RegistryError(
    "unreachable",
    `${op.doing}: talking to the registry ${host} failed: ${err?.message ?? String(e)}`,
    {
      cause: e,
    },
  );
}
