// Registry authentication, as Docker Hub and distribution do it: a request without credentials
// gets a 401 with a WWW-Authenticate challenge; "Basic" wants the user's password on every
// request, "Bearer" names a token server (realm, service, scope) that trades the password (or
// nothing, for public images) for a short-lived token.
//
// Tokens are cached per (host, scopes, credentials) until they expire: keyed by a hash of the
// credentials too, so a token fetched with one build's login is never used by another build
// that has different (or no) credentials. The last challenge of each host is remembered, so
// later requests for new scopes fetch their token up front instead of taking a 401 first.
import { createHash } from "node:crypto";
import { RegistryError } from "./errors.ts";
import { discard, type HttpTransport, isLoopbackHost, readBody } from "./http.ts";

/** A login for a registry: a password, or an identity token (`docker login` with an OAuth flow). */
export type Credentials = { username: string; password: string } | { identityToken: string };

/** Finds the credentials for a registry host ("docker.io", "127.0.0.1:5000"); undefined means anonymous. */
export type CredentialsProvider = (host: string) => Promise<Credentials | undefined>;

/** One parsed challenge from a WWW-Authenticate header. */
export type Challenge = { scheme: string; params: Record<string, string> };

const TOKEN_CHARS = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const MAX_TOKEN_RESPONSE = 1024 * 1024;
/** Tokens are dropped this long before they expire, so one is not sent as it runs out. */
const EXPIRY_MARGIN_MS = 5_000;
const DEFAULT_TOKEN_TTL_S = 60;

/** Parses a WWW-Authenticate header (RFC 7235): one or more challenges with their parameters. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const text = Array.isArray(header) ? header.join(", ") : (header ?? "");
  const out: Challenge[] = [];
  let i = 0;
  const skip = (re: RegExp) => {
    while (i < text.length && re.test(text[i]!)) i++;
  };
  const token = () => {
    const start = i;
    skip(TOKEN_CHARS);
    return text.slice(start, i);
  };
  while (i < text.length) {
    skip(/[\s,]/);
    const word = token();
    if (word === "") {
      i++;
      continue;
    }
    skip(/\s/);
    if (text[i] === "=" && out.length > 0) {
      i++;
      skip(/\s/);
      let value = "";
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === "\\" && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++;
      } else {
        // Unquoted values should be tokens; be lenient with URLs some servers leave unquoted.
        const start = i;
        while (i < text.length && !/[,\s]/.test(text[i]!)) i++;
        value = text.slice(start, i);
      }
      out.at(-1)!.params[word.toLowerCase()] = value;
    } else {
      out.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  return out;
}

/** The authorization state of one operation (a pull or push): its credentials and the shared caches. */
export type AuthSession = {
  /** The Authorization header to send to `host` for `scopes`, when the host's scheme is already known. */
  authorization(host: string, scopes: string[], signal?: AbortSignal): Promise<string | undefined>;
  /** Answers a 401 for a request about `image`: returns the Authorization to retry with, or throws "unauthorized". */
  answer(
    host: string,
    challengeHeader: string | string[] | undefined,
    scopes: string[],
    ctx: { doing: string; image: string; signal?: AbortSignal },
  ): Promise<string>;
  /** Forgets the token a request was refused with. */
  invalidate(host: string, scopes: string[]): Promise<void>;
  /** Whether the operation has credentials for `host`. */
  hasCredentials(host: string): Promise<boolean>;
};

type CachedToken = { token: string; expiresAt: number };

/** Token and challenge caches shared by every operation of one client. */
export class Authorizer {
  #transport: HttpTransport;
  #now: () => number;
  #challenges = new Map<string, Challenge>();
  #tokens = new Map<string, CachedToken>();
  #fetching = new Map<string, Promise<CachedToken>>();

  constructor(transport: HttpTransport, now: () => number = Date.now) {
    this.#transport = transport;
    this.#now = now;
  }

  /** A session for one operation whose credentials come from `provider` (asked once per host). */
  session(provider: CredentialsProvider | undefined): AuthSession {
    const creds = new Map<string, Promise<Credentials | undefined>>();
    const credentialsFor = (host: string) => {
      let c = creds.get(host);
      if (c === undefined) {
        c = provider
          ? provider(host).catch((e: unknown) => {
              throw new RegistryError(
                "unauthorized",
                `getting the credentials for ${host}: ${(e as Error).message}`,
                { cause: e },
              );
            })
          : Promise.resolve(undefined);
        creds.set(host, c);
      }
      return c;
    };
    const fromChallenge = async (
      host: string,
      challenge: Challenge,
      scopes: string[],
      ctx: { doing: string; image: string; signal?: AbortSignal },
    ) => {
      const { doing, signal } = ctx;
      const credentials = await credentialsFor(host);
      if (challenge.scheme === "basic") {
        if (credentials === undefined || !("username" in credentials)) {
          throw unauthorized(doing, ctx.image, host, credentials !== undefined);
        }
        return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
      }
      const token = await this.#token(host, challenge, scopes, credentials, doing, signal);
      return `Bearer ${token.token}`;
    };
    return {
      authorization: async (host, scopes, signal) => {
        const challenge = this.#challenges.get(host);
        if (challenge === undefined) return undefined;
        return fromChallenge(host, challenge, scopes, {
          doing: `authorizing to ${host}`,
          image: host,
          signal,
        });
      },
      answer: async (host, header, scopes, ctx) => {
        const { doing } = ctx;
        const challenges = parseChallenges(header);
        const challenge =
          challenges.find((c) => c.scheme === "bearer" && c.params["realm"]) ??
          challenges.find((c) => c.scheme === "basic");
        if (challenge === undefined) {
          throw new RegistryError(
            "unauthorized",
            `${doing}: unauthorized: the registry ${host} answered 401 without a challenge buildd understands (${JSON.stringify(String(header ?? ""))})`,
            { status: 401 },
          );
        }
        this.#challenges.set(host, challenge);
        return fromChallenge(host, challenge, scopes, ctx);
      },
      invalidate: async (host, scopes) => {
        this.#tokens.delete(tokenKey(host, scopes, await credentialsFor(host)));
      },
      hasCredentials: async (host) => (await credentialsFor(host)) !== undefined,
    };
  }

  /** A cached token for (host, scopes, credentials), or a new one from the challenge's realm. */
  async #token(
    host: string,
    challenge: Challenge,
    scopes: string[],
    credentials: Credentials | undefined,
    doing: string,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    const key = tokenKey(host, scopes, credentials);
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.expiresAt > this.#now()) return cached;
    let running = this.#fetching.get(key);
    if (running === undefined) {
      running = this.#fetchToken(host, challenge, scopes, credentials, doing, signal);
      this.#fetching.set(key, running);
      void running.then(
        (t) => this.#tokens.set(key, t),
        () => {},
      );
      void running.finally(() => this.#fetching.delete(key)).catch(() => {});
    }
    return running;
  }

  async #fetchToken(
    host: string,
    challenge: Challenge,
    scopes: string[],
    credentials: Credentials | undefined,
    doing: string,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    const realm = challenge.params["realm"] ?? "";
    let url: URL;
    try {
      url = new URL(realm);
      if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("not http(s)");
    } catch {
      throw new RegistryError(
        "unauthorized",
        `${doing}: the registry ${host} names an invalid token realm ${JSON.stringify(realm)}`,
      );
    }
    if (
      credentials !== undefined &&
      url.protocol === "http:" &&
      !isLoopbackHost(url.host) &&
      !this.#transport.config(url.host)?.http
    ) {
      throw new RegistryError(
        "unauthorized",
        `${doing}: the token server ${url.origin} for ${host} is plain http; buildd does not send credentials there (set http = true for ${url.host} in buildd.toml to allow it)`,
      );
    }
    const allScopes = [
      ...new Set([...(challenge.params["scope"]?.split(" ").filter(Boolean) ?? []), ...scopes]),
    ];
    const service = challenge.params["service"];
    let res: Awaited<ReturnType<HttpTransport["send"]>>;
    try {
      if (credentials !== undefined && "identityToken" in credentials) {
        // OAuth2 refresh-token grant, as docker does with an identity token.
        const form = new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: credentials.identityToken,
          client_id: "buildd",
        });
        if (service) form.set("service", service);
        if (allScopes.length > 0) form.set("scope", allScopes.join(" "));
        res = await this.#transport.send(url, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: Buffer.from(form.toString()),
          signal,
        });
      } else {
        if (service) url.searchParams.set("service", service);
        for (const s of allScopes) url.searchParams.append("scope", s);
        const headers: Record<string, string> = {};
        if (credentials !== undefined) {
          headers["authorization"] =
            `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
        }
        res = await this.#transport.send(url, { method: "GET", headers, signal });
      }
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      throw new RegistryError(
        "unreachable",
        `${doing}: getting a token from ${url.origin}${url.pathname}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw new RegistryError(
        "unauthorized",
        `${doing}: unauthorized: the token server ${url.origin} refused the credentials for ${host}; check the login (docker login ${host})`,
        { status: res.status },
      );
    }
    const body = await readBody(res, MAX_TOKEN_RESPONSE, `reading a token from ${url.origin}`);
    if (res.status !== 200) {
      throw new RegistryError(
        "server",
        `${doing}: the token server ${url.origin} answered ${res.status}: ${body.toString("utf8").slice(0, 200)}`,
        { status: res.status },
      );
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw new RegistryError(
        "server",
        `${doing}: the token server ${url.origin} sent something that is not JSON`,
      );
    }
    const token =
      typeof parsed.token === "string" && parsed.token !== "" ? parsed.token : parsed.access_token;
    if (typeof token !== "string" || token === "") {
      throw new RegistryError("server", `${doing}: the token server ${url.origin} sent no token`);
    }
    const ttl =
      typeof parsed.expires_in === "number" && parsed.expires_in > 0
        ? parsed.expires_in
        : DEFAULT_TOKEN_TTL_S;
    const issued = typeof parsed.issued_at === "string" ? Date.parse(parsed.issued_at) : Number.NaN;
    const start = Number.isNaN(issued) || issued > this.#now() ? this.#now() : issued;
    return { token, expiresAt: start + ttl * 1000 - EXPIRY_MARGIN_MS };
  }
}

/** The "unauthorized" error of a request about `image` that the registry refused. */
export function unauthorized(
  doing: string,
  image: string,
  host: string,
  hadCredentials: boolean,
): RegistryError {
  const hint = hadCredentials
    ? `the registry refused the credentials for ${host}: check the login and the access rights to this repository`
    : `no credentials for ${host}: log in with \`docker login ${host}\``;
  return new RegistryError(
    "unauthorized",
    `${doing}: unauthorized: authentication required for ${image} (${hint})`,
    {
      status: 401,
    },
  );
}

function tokenKey(host: string, scopes: string[], credentials: Credentials | undefined): string {
  const who =
    credentials === undefined
      ? "anonymous"
      : createHash("sha256").update(JSON.stringify(credentials)).digest("hex");
  return `${host}\n${[...scopes].sort().join(" ")}\n${who}`;
}
