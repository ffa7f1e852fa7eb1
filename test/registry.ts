// A real registry (Debian's docker-registry, distribution v2.8) on loopback, behind a small Node
// proxy that counts traffic and, when asked, enforces basic or bearer-token auth the way Docker
// Hub does, so the registry client is tested against real challenges without the internet.
// The proxy runs inside the test process: drive tools against it with async exec only
// (execFileSync would block the event loop and deadlock the proxy).
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { Agent, type IncomingMessage, request, type ServerResponse } from "node:http";
import { join } from "node:path";
import {
  type HttpServer,
  type PathStats,
  type RequestRecord,
  requestRecorder,
  startHttpServer,
} from "./http.ts";
import { freePort, type Service, spawnService, stopWhenAborted, tempDir } from "./process.ts";

export const REGISTRY_BIN = "/usr/bin/docker-registry";
/** The `service` the token server and the challenges name. */
export const TOKEN_SERVICE = "buildd-test-registry";

/** Credentials the registry demands; "token" adds a bearer-token auth server like auth.docker.io. */
export type RegistryAuth = {
  username: string;
  password: string;
  mode: "basic" | "token";
  /** Token mode: anonymous callers get pull access (a public repo) instead of no access at all. */
  anonymousPull?: boolean;
  /** Token mode: how long a token is honoured (default 300 s), to test re-authentication. */
  tokenTtlSeconds?: number;
};

/** A running test registry. */
export type Registry = {
  /** "127.0.0.1:PORT", for image references. */
  host: string;
  /** "http://127.0.0.1:PORT". */
  url: string;
  /** The temp dir holding config.yml and the storage (data/). */
  dir: string;
  auth?: RegistryAuth;
  /** Token mode: the token endpoint ("http://127.0.0.1:PORT/token"). */
  tokenUrl?: string;
  /** Requests per path through the proxy, plus "/token" requests to the token server. */
  stats(): Record<string, PathStats>;
  log(): RequestRecord[];
  resetStats(): void;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/** Starts docker-registry with filesystem storage in a temp dir, fronted by a counting (and maybe auth) proxy. */
export async function startRegistry(
  opts: { auth?: RegistryAuth; signal?: AbortSignal } = {},
): Promise<Registry> {
  const tmp = await tempDir("registry");
  const cleanups: (() => Promise<void>)[] = [tmp.cleanup];
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  };
  try {
    const upstream = await startDockerRegistry(tmp.dir);
    cleanups.push(upstream.stop);
    const recorder = requestRecorder();
    const tokens = new Map<string, { access: Set<string>; expires: number }>();
    let tokenServer: HttpServer | undefined;
    if (opts.auth?.mode === "token") {
      tokenServer = await startHttpServer((req, res) => {
        recorder.track(req, res);
        return serveToken(opts.auth!, tokens, req, res);
      });
      cleanups.push(tokenServer.stop);
    }
    const agent = new Agent({ keepAlive: true });
    cleanups.push(async () => agent.destroy());
    const gate = opts.auth ? authGate(opts.auth, tokens, `${tokenServer?.url}/token`) : () => true;
    const proxy = await startHttpServer((req, res) => {
      recorder.track(req, res);
      if (gate(req, res)) forward(req, res, upstream.port, agent);
    });
    cleanups.push(proxy.stop);
    stopWhenAborted(opts.signal, stop);
    return {
      host: `127.0.0.1:${proxy.port}`,
      url: proxy.url,
      dir: tmp.dir,
      auth: opts.auth,
      tokenUrl: tokenServer && `${tokenServer.url}/token`,
      stats: recorder.stats,
      log: recorder.log,
      resetStats: recorder.reset,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** docker-registry takes a port, not port 0, so pick one and retry if someone else took it first. */
async function startDockerRegistry(dir: string): Promise<Service & { port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = join(dir, "config.yml");
    await writeFile(config, registryConfig(join(dir, "data"), port));
    try {
      const service = await spawnService(REGISTRY_BIN, ["serve", config], {
        readyCheck: async () => (await fetch(`http://127.0.0.1:${port}/v2/`)).status === 200,
      });
      return { ...service, port };
    } catch (e) {
      if (attempt < 5 && /address already in use/.test((e as Error).message)) continue;
      throw e;
    }
  }
}

function registryConfig(storage: string, port: number): string {
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString("hex")}
  headers:
    X-Content-Type-Options: [nosniff]
`;
}

/** Passes the request through unchanged; Host is kept so the registry's Location headers point at the proxy. */
function forward(req: IncomingMessage, res: ServerResponse, port: number, agent: Agent): void {
  const up = request(
    { host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers, agent },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`test registry proxy: upstream failed: ${e.message}\n`);
  });
  req.pipe(up);
}

/** The scope a distribution API request needs, as in distribution's token auth (`undefined` for /v2/). */
function requiredScope(req: IncomingMessage): { type: string; name: string; actions: string[] } | undefined {
  const path = new URL(req.url ?? "/", "http://x").pathname;
  if (path === "/v2/_catalog") return { type: "registry", name: "catalog", actions: ["*"] };
  const m = /^\/v2\/(.+?)\/(manifests|blobs|tags|referrers)\//.exec(path);
  if (!m) return undefined;
  const method = req.method ?? "GET";
  const actions =
    method === "GET" || method === "HEAD" ? ["pull"] : method === "DELETE" ? ["delete"] : ["pull", "push"];
  return { type: "repository", name: m[1]!, actions };
}

/** Returns true when the request may pass; otherwise answers 401 with the right challenge. */
function authGate(
  auth: RegistryAuth,
  tokens: Map<string, { access: Set<string>; expires: number }>,
  realm: string,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const basic = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  return (req, res) => {
    const header = req.headers.authorization;
    if (auth.mode === "basic") {
      if (header === basic) return true;
      return deny(res, `Basic realm="${TOKEN_SERVICE}"`, "authentication required");
    }
    const scope = requiredScope(req);
    const scopeParam = scope ? `,scope="${scope.type}:${scope.name}:${scope.actions.join(",")}"` : "";
    const challenge = `Bearer realm="${realm}",service="${TOKEN_SERVICE}"${scopeParam}`;
    if (!header?.startsWith("Bearer ")) return deny(res, challenge, "authentication required");
    const token = tokens.get(header.slice("Bearer ".length));
    if (!token || token.expires < Date.now()) {
      return deny(res, `${challenge},error="invalid_token"`, "invalid or expired token");
    }
    const granted = (action: string) =>
      token.access.has(`${scope!.type}:${scope!.name}:${action}`) ||
      token.access.has(`${scope!.type}:${scope!.name}:*`);
    if (scope && !scope.actions.every(granted)) {
      return deny(res, `${challenge},error="insufficient_scope"`, "insufficient scope");
    }
    return true;
  };
}

function deny(res: ServerResponse, challenge: string, message: string): false {
  const body = JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message, detail: null }] });
  res.writeHead(401, {
    "content-type": "application/json; charset=utf-8",
    "docker-distribution-api-version": "registry/2.0",
    "www-authenticate": challenge,
  });
  res.end(body);
  return false;
}

/**
 * The token endpoint (GET with query, or OAuth2 POST form): right credentials get every action
 * asked for, no credentials get pull (with `anonymousPull`) or nothing, wrong ones a 401.
 */
async function serveToken(
  auth: RegistryAuth,
  tokens: Map<string, { access: Set<string>; expires: number }>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://x");
  let params = url.searchParams;
  let user: string | undefined;
  let pass: string | undefined;
  if (req.method === "POST") {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    params = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
    if (params.get("grant_type") === "password") {
      user = params.get("username") ?? undefined;
      pass = params.get("password") ?? undefined;
    }
  }
  const header = req.headers.authorization;
  if (header?.startsWith("Basic ")) {
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    user = decoded.slice(0, colon);
    pass = decoded.slice(colon + 1);
  }
  const json = (status: number, body: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  if (url.pathname !== "/token") return void json(404, { details: "not found" });
  if (params.get("service") !== TOKEN_SERVICE) {
    return void json(400, { details: `unknown service ${params.get("service")}` });
  }
  const authenticated = user !== undefined;
  if (authenticated && (user !== auth.username || pass !== auth.password)) {
    return void json(401, { details: "incorrect username or password" });
  }
  const access = new Set<string>();
  for (const scope of params.getAll("scope").flatMap((s) => s.split(" "))) {
    const [type, ...rest] = scope.split(":");
    const actions = rest.pop()?.split(",") ?? [];
    const name = rest.join(":");
    for (const action of actions) {
      if (authenticated || (auth.anonymousPull && action === "pull")) access.add(`${type}:${name}:${action}`);
    }
  }
  const token = randomBytes(24).toString("base64url");
  const ttl = auth.tokenTtlSeconds ?? 300;
  tokens.set(token, { access, expires: Date.now() + ttl * 1000 });
  json(200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() });
}
