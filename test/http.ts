// A loopback HTTP server for http sources and fault tests, plus the request recorder the
// registry proxy shares: tests assert what was fetched (and how often), not just what came back.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { stopWhenAborted } from "./process.ts";

/** One request as a server saw it. */
export type RequestRecord = {
  method: string;
  /** The path without the query string. */
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  status: number;
  bytesIn: number;
  bytesOut: number;
};

/** Totals for one path, e.g. to assert a blob was "fetched once": `stats()[p].methods.GET === 1`. */
export type PathStats = {
  requests: number;
  bytesIn: number;
  bytesOut: number;
  methods: Record<string, number>;
  statuses: Record<number, number>;
};

/** Collects RequestRecords for a server; `track` wraps a request/response pair. */
export function requestRecorder() {
  let records: RequestRecord[] = [];
  return {
    /** Counts bytes in both directions and records the request when the response is done. */
    track(req: IncomingMessage, res: ServerResponse): void {
      const url = new URL(req.url ?? "/", "http://x");
      const record: RequestRecord = {
        method: req.method ?? "GET",
        path: decodeURIComponent(url.pathname),
        query: url.search,
        headers: req.headers,
        status: 0,
        bytesIn: 0,
        bytesOut: 0,
      };
      req.on("data", (chunk: Buffer) => {
        record.bytesIn += chunk.length;
      });
      const write = res.write.bind(res) as (...a: unknown[]) => boolean;
      const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
      const count = (chunk: unknown) => {
        if (typeof chunk === "string") record.bytesOut += Buffer.byteLength(chunk);
        else if (chunk instanceof Uint8Array) record.bytesOut += chunk.length;
      };
      res.write = ((...a: unknown[]) => {
        count(a[0]);
        return write(...a);
      }) as typeof res.write;
      res.end = ((...a: unknown[]) => {
        if (typeof a[0] !== "function") count(a[0]);
        return end(...a);
      }) as typeof res.end;
      res.once("close", () => {
        record.status = res.statusCode;
        records.push(record);
      });
    },
    /** Every finished request, oldest first. */
    log: (): RequestRecord[] => [...records],
    /** Totals per path. */
    stats(): Record<string, PathStats> {
      const out: Record<string, PathStats> = {};
      for (const r of records) {
        out[r.path] ??= { requests: 0, bytesIn: 0, bytesOut: 0, methods: {}, statuses: {} };
        const s = out[r.path]!;
        s.requests++;
        s.bytesIn += r.bytesIn;
        s.bytesOut += r.bytesOut;
        s.methods[r.method] = (s.methods[r.method] ?? 0) + 1;
        s.statuses[r.status] = (s.statuses[r.status] ?? 0) + 1;
      }
      return out;
    },
    reset(): void {
      records = [];
    },
  };
}

/** What a path serves. ETag / Last-Modified in `headers` enable 304 answers to conditional GETs. */
export type Route = {
  body: string | Buffer;
  headers?: Record<string, string>;
  status?: number;
  /** Fault injection: wait before answering, send only part of the body then hang or cut the connection. */
  fault?: {
    delayMs?: number;
    stallAfterBytes?: number;
    truncateAfterBytes?: number;
  };
};

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** A running test HTTP server. */
export type HttpServer = {
  /** "http://127.0.0.1:PORT" (no trailing slash). */
  url: string;
  port: number;
  /** Replaces or adds a route (only for servers started with a route table). */
  setRoute(path: string, route: Route): void;
  stats(): Record<string, PathStats>;
  log(): RequestRecord[];
  resetStats(): void;
  /** Closes the server and every open (even stalled) connection. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/** Serves a route table (or a custom handler) on 127.0.0.1 at a free port. */
export async function startHttpServer(
  routesOrHandler: Record<string, Route> | Handler,
  opts: { signal?: AbortSignal } = {},
): Promise<HttpServer> {
  const routes = new Map(typeof routesOrHandler === "function" ? [] : Object.entries(routesOrHandler));
  const handler: Handler =
    typeof routesOrHandler === "function" ? routesOrHandler : (req, res) => serveRoute(routes, req, res);
  const recorder = requestRecorder();
  const server = createServer((req, res) => {
    recorder.track(req, res);
    Promise.resolve(handler(req, res)).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`test server handler failed: ${(e as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  stopWhenAborted(opts.signal, stop);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setRoute: (path, route) => void routes.set(path, route),
    stats: recorder.stats,
    log: recorder.log,
    resetStats: recorder.reset,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** One path serving `body` with a fault (stall or truncate after N bytes, or a delay), for timeout/retry tests. */
export async function startSlowServer(
  body: string | Buffer,
  fault: NonNullable<Route["fault"]>,
  opts: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<HttpServer & { fileUrl: string }> {
  const server = await startHttpServer({ "/file": { body, fault, headers: opts.headers } }, opts);
  return { ...server, fileUrl: `${server.url}/file` };
}

async function serveRoute(routes: Map<string, Route>, req: IncomingMessage, res: ServerResponse) {
  const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  const route = routes.get(path);
  if (!route) {
    res.writeHead(404, { "content-type": "text/plain" }).end(`no route for ${path}\n`);
    return;
  }
  if (route.fault?.delayMs) await new Promise((r) => setTimeout(r, route.fault?.delayMs));
  const headers = Object.fromEntries(
    Object.entries(route.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  if (notModified(req, headers)) {
    res.writeHead(304, pick(headers, ["etag", "last-modified", "cache-control"])).end();
    return;
  }
  const body = Buffer.from(route.body);
  res.writeHead(route.status ?? 200, { "content-length": String(body.length), ...headers });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const { stallAfterBytes, truncateAfterBytes } = route.fault ?? {};
  if (stallAfterBytes !== undefined) {
    // Leave the response open forever; stop() closes the connection.
    res.write(body.subarray(0, stallAfterBytes));
    return;
  }
  if (truncateAfterBytes !== undefined) {
    res.write(body.subarray(0, truncateAfterBytes), () => res.destroy());
    return;
  }
  res.end(body);
}

/** RFC 9110: If-None-Match wins over If-Modified-Since; both only apply when the route has the validator. */
function notModified(req: IncomingMessage, headers: Record<string, string>): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const inm = req.headers["if-none-match"];
  if (inm !== undefined) {
    if (headers.etag === undefined) return false;
    const tags = inm.split(",").map((t) => t.trim().replace(/^W\//, ""));
    return tags.includes("*") || tags.includes(headers.etag.replace(/^W\//, ""));
  }
  const ims = req.headers["if-modified-since"];
  if (ims !== undefined && headers["last-modified"] !== undefined) {
    const since = Date.parse(ims);
    const modified = Date.parse(headers["last-modified"]);
    return !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since;
  }
  return false;
}

function pick(headers: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => names.includes(k)));
}
