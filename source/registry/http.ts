// HTTP to registries with the daemon's per-host settings: plain http, self-signed CAs,
// `insecure` (no certificate check), one keep-alive agent per host. Loopback registries with no
// settings are tried over https first and over http when the TLS handshake fails, as docker
// and containerd treat localhost. Requests are single attempts here; retries, auth and
// redirects are the client's business (client.ts).
import { readFile } from "node:fs/promises";
import {
  Agent as HttpAgent,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request as httpRequest,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import type { RegistryConfig } from "../../control/config.ts";

/** A request body: bytes, or a function opening a stream (called again when the request is repeated). */
export type RequestBody = Buffer | (() => Readable | Promise<Readable>);

/** One HTTP request. */
export type HttpRequest = {
  method: string;
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Required with a streamed body: registries want Content-Length. */
  contentLength?: number;
  signal?: AbortSignal;
};

/** A response whose body has not been read yet: read it, or `discard` it. */
export type HttpResponse = {
  status: number;
  headers: IncomingHttpHeaders;
  url: URL;
  body: IncomingMessage;
};

/** Options of the transport. */
export type HttpTransportOptions = {
  /** A request whose socket is silent this long (connecting, or mid-body) fails. Default 120 s. */
  idleTimeoutMs?: number;
  userAgent?: string;
};

/** Network error codes after which a request may be repeated. */
const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ECONNABORTED",
  "EAI_AGAIN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
]);
/** TLS failures that mean "this is not a TLS server", for the loopback http fallback. */
const NOT_TLS_CODES = new Set([
  "EPROTO",
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ECONNRESET",
]);
const TLS_CODE =
  /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT|ERR_OSSL)/;

/** True for network errors (not HTTP statuses) that a retry may fix. */
export function isTransientNetworkError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException | undefined;
  if (err?.name === "AbortError") return false;
  return (
    TRANSIENT_CODES.has(err?.code ?? "") || /socket hang up|aborted|premature close/i.test(err?.message ?? "")
  );
}

/** True for TLS certificate and handshake errors. */
export function isTlsError(e: unknown): boolean {
  return TLS_CODE.test((e as NodeJS.ErrnoException | undefined)?.code ?? "");
}

/** True for a host that is this machine (docker treats these as insecure registries by default). */
export function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return name === "localhost" || name === "::1" || (isIP(name) === 4 && name.startsWith("127."));
}

/** The host that serves a registry's API: Docker Hub's is not "docker.io". */
export function apiHost(host: string): string {
  return host === "docker.io" ? "registry-1.docker.io" : host;
}

/** Sends requests with the agent and scheme each host's config asks for. */
export class HttpTransport {
  #hosts: Record<string, RegistryConfig>;
  #idleTimeoutMs: number;
  #userAgent: string;
  #agents = new Map<string, Promise<HttpAgent | HttpsAgent>>();
  #schemes = new Map<string, "http:" | "https:">();

  constructor(hosts: Record<string, RegistryConfig>, opts: HttpTransportOptions = {}) {
    this.#hosts = hosts;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;
    this.#userAgent = opts.userAgent ?? "buildd";
  }

  /** The settings for `host` ("docker.io" settings also apply to registry-1.docker.io). */
  config(host: string): RegistryConfig | undefined {
    return this.#hosts[host] ?? (host === "registry-1.docker.io" ? this.#hosts["docker.io"] : undefined);
  }

  /**
   * Sends a request to a registry's API (`path` starts with /v2/): the scheme comes from the
   * host's settings, or is found out once for an unconfigured loopback registry.
   */
  async sendToRegistry(host: string, path: string, req: HttpRequest): Promise<HttpResponse> {
    const api = apiHost(host);
    const known = this.#schemes.get(api);
    const config = this.config(host);
    if (known !== undefined || config !== undefined || !isLoopbackHost(api)) {
      const scheme = known ?? (config?.http ? "http:" : "https:");
      return this.send(new URL(`${scheme}//${api}${path}`), req, host);
    }
    try {
      const res = await this.send(new URL(`https://${api}${path}`), req, host);
      this.#schemes.set(api, "https:");
      return res;
    } catch (e) {
      // Only "this is no TLS server" means http; a certificate problem is reported as such.
      if (!NOT_TLS_CODES.has((e as NodeJS.ErrnoException).code ?? "")) throw e;
      const res = await this.send(new URL(`http://${api}${path}`), req, host);
      this.#schemes.set(api, "http:");
      return res;
    }
  }

  /** The base URL requests to `host` use now ("https://host"), for resolving Location headers. */
  baseUrl(host: string): string {
    const api = apiHost(host);
    const scheme = this.#schemes.get(api) ?? (this.config(host)?.http ? "http:" : "https:");
    return `${scheme}//${api}`;
  }

  /** Sends one request to an absolute URL; `configHost` picks the TLS settings (default: the URL's host). */
  async send(url: URL, req: HttpRequest, configHost = url.host): Promise<HttpResponse> {
    req.signal?.throwIfAborted();
    const agent = await this.#agent(url.protocol, configHost);
    const headers: Record<string, string> = { "user-agent": this.#userAgent, ...req.headers };
    let body: Buffer | Readable | undefined;
    if (req.body !== undefined) body = Buffer.isBuffer(req.body) ? req.body : await req.body();
    if (Buffer.isBuffer(body)) headers["content-length"] = String(body.length);
    else if (body !== undefined && req.contentLength !== undefined)
      headers["content-length"] = String(req.contentLength);
    else if (body === undefined && req.method !== "GET" && req.method !== "HEAD")
      headers["content-length"] = "0";
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise<HttpResponse>((resolve, reject) => {
      const r = send(url, { method: req.method, headers, agent, signal: req.signal }, (res) =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, url, body: res }),
      );
      r.setTimeout(this.#idleTimeoutMs, () => {
        const e = new Error(`${url.host} sent nothing for ${Math.round(this.#idleTimeoutMs / 1000)}s`);
        r.destroy(Object.assign(e, { code: "ETIMEDOUT" }));
      });
      r.on("error", (e) => {
        reject(e);
        if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      });
      if (body === undefined) r.end();
      else if (Buffer.isBuffer(body)) r.end(body);
      else {
        body.on("error", (e) => r.destroy(e));
        body.pipe(r);
      }
    });
  }

  /** Closes every idle connection. */
  close(): void {
    for (const agent of this.#agents.values())
      void agent.then(
        (a) => a.destroy(),
        () => {},
      );
    this.#agents.clear();
  }

  #agent(protocol: string, configHost: string): Promise<HttpAgent | HttpsAgent> {
    const key = `${protocol}//${configHost}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = this.#makeAgent(protocol, configHost);
      this.#agents.set(key, agent);
      agent.catch(() => this.#agents.delete(key));
    }
    return agent;
  }

  async #makeAgent(protocol: string, configHost: string): Promise<HttpAgent | HttpsAgent> {
    if (protocol === "http:") return new HttpAgent({ keepAlive: true });
    const config = this.config(configHost);
    const extra: string[] = [];
    for (const file of config?.ca ?? []) {
      try {
        extra.push(await readFile(file, "utf8"));
      } catch (e) {
        throw new Error(
          `reading the CA certificate ${file} configured for ${configHost}: ${(e as Error).message}`,
        );
      }
    }
    return new HttpsAgent({
      keepAlive: true,
      rejectUnauthorized: !config?.insecure,
      // Extra CAs add to the system's roots, they do not replace them.
      ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
    });
  }
}

/** Reads a whole body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers["content-length"] ?? Number.NaN);
  if (declared > limit) {
    res.body.destroy();
    throw new Error(`${what}: ${declared} bytes is more than the limit of ${limit}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      res.body.destroy();
      throw new Error(`${what}: more than the limit of ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Throws a response's body away: small ones are read so the connection is reused, big ones dropped. */
export async function discard(res: HttpResponse): Promise<void> {
  const declared = Number(res.headers["content-length"] ?? Number.NaN);
  if (res.body.complete) return;
  if (!(declared <= 64 * 1024)) {
    res.body.destroy();
    return;
  }
  try {
    for await (const _ of res.body) {
      // Draining.
    }
  } catch {
    // The connection is gone; nothing to reuse.
  }
}
