// A scripted distribution-API server for the tests a real registry cannot play: manifests that
// lie about their digest, blobs cut short, connections dropped mid-body, 5xx before success.
// Everything else is tested against the real docker-registry (test/registry.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import { type HttpServer, startHttpServer } from "../../test/http.ts";

/** What one path serves. */
export type FakeResource = {
  body: Buffer;
  /** Content-Type, and Docker-Content-Digest when set (it may lie). */
  contentType?: string;
  digestHeader?: string;
};

/** A fault for the next request to a path (faults are used up in order). */
export type FakeFault = {
  /** Answer with this status (and an error body) instead. */
  status?: number;
  /** Send the headers for the full body, this many bytes, then cut the connection. */
  truncateAfterBytes?: number;
  /** Send this many bytes, then nothing (until the server stops). */
  stallAfterBytes?: number;
  /** Serve this body instead, with an honest Content-Length. */
  body?: Buffer;
};

/** A running fake registry. */
export type FakeRegistry = {
  host: string;
  server: HttpServer;
  /** Resources by path ("/v2/app/manifests/latest", "/v2/app/blobs/sha256:…"). */
  resources: Map<string, FakeResource>;
  faults: Map<string, FakeFault[]>;
};

/** Starts a fake registry on 127.0.0.1 (plain http); stops with the signal. */
export async function startFakeRegistry(signal?: AbortSignal): Promise<FakeRegistry> {
  const resources = new Map<string, FakeResource>();
  const faults = new Map<string, FakeFault[]>();
  const server = await startHttpServer((req, res) => serve(resources, faults, req, res), { signal });
  return { host: `127.0.0.1:${server.port}`, server, resources, faults };
}

function serve(
  resources: Map<string, FakeResource>,
  faults: Map<string, FakeFault[]>,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  const json = (status: number, code: string, message: string): void => {
    res
      .writeHead(status, { "content-type": "application/json" })
      .end(JSON.stringify({ errors: [{ code, message }] }));
  };
  if (path === "/v2/" || path === "/v2") return void res.writeHead(200).end("{}");
  const fault = faults.get(path)?.shift();
  if (fault?.status !== undefined) return void json(fault.status, "FAULT", `scripted status ${fault.status}`);
  const resource = resources.get(path);
  if (resource === undefined)
    return void json(404, path.includes("/manifests/") ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN", "unknown");
  let body = fault?.body ?? resource.body;
  const headers: Record<string, string> = {};
  if (resource.contentType) headers["content-type"] = resource.contentType;
  if (resource.digestHeader) headers["docker-content-digest"] = resource.digestHeader;
  let status = 200;
  const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ""));
  if (range && path.includes("/blobs/")) {
    const start = Number(range[1]);
    if (start >= body.length) return void json(416, "RANGE", "range not satisfiable");
    headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    body = body.subarray(start);
    status = 206;
  }
  headers["content-length"] = String(body.length);
  res.writeHead(status, headers);
  if (req.method === "HEAD") return void res.end();
  if (fault?.truncateAfterBytes !== undefined) {
    res.write(body.subarray(0, fault.truncateAfterBytes), () => res.destroy());
    return;
  }
  if (fault?.stallAfterBytes !== undefined) {
    res.write(body.subarray(0, fault.stallAfterBytes));
    return;
  }
  res.end(body);
}
