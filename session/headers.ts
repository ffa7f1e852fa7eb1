// The request headers of Control.Session, as BuildKit's client sends them and its daemon reads
// them (grpc metadata keys, lower-case on the wire).

/** The session's id; SolveRequest.Session and LLB local sources refer to it. */
export const SESSION_ID_HEADER = "x-docker-expose-session-uuid";
/** A human-readable name (BuildKit uses the client's working directory's base name). */
export const SESSION_NAME_HEADER = "x-docker-expose-session-name";
/** Groups sessions of one project, so that the daemon can reuse file-sync caches between them. */
export const SESSION_SHAREDKEY_HEADER = "x-docker-expose-session-sharedkey";
/** One per method the client serves, as a full path ("/moby.filesync.v1.FileSync/DiffCopy"). */
export const SESSION_METHOD_HEADER = "x-docker-expose-session-grpc-method";

/** What a session announces about itself. */
export interface SessionInfo {
  id: string;
  name: string;
  sharedKey: string;
  methods: readonly string[];
}

/** The Control.Session request headers for a session. */
export function sessionHeaders(info: SessionInfo): Headers {
  const h = new Headers();
  h.set(SESSION_ID_HEADER, info.id);
  h.set(SESSION_NAME_HEADER, info.name);
  h.set(SESSION_SHAREDKEY_HEADER, info.sharedKey);
  for (const m of info.methods) h.append(SESSION_METHOD_HEADER, m);
  return h;
}

/**
 * Reads session headers. Repeated method fields reach Node joined with ", " (method paths
 * contain no commas or spaces), so they are split again. Throws when the id is missing.
 */
export function parseSessionHeaders(h: Headers): SessionInfo {
  const id = h.get(SESSION_ID_HEADER) ?? "";
  if (id === "") throw new Error(`opening a session: the ${SESSION_ID_HEADER} header is missing`);
  const methods = (h.get(SESSION_METHOD_HEADER) ?? "")
    .split(",")
    .map((m) => m.trim())
    .filter((m) => m !== "");
  return {
    id,
    name: h.get(SESSION_NAME_HEADER) ?? "",
    sharedKey: h.get(SESSION_SHAREDKEY_HEADER) ?? "",
    methods,
  };
}
