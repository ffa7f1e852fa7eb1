// BuildKit's FileSend protocol (session/filesync): the daemon calls the client's
// /moby.filesync.v1.FileSend/DiffCopy once per output and streams the output in BytesMessage
// chunks; the client picks the destination by the exporter's index in the solve request
// (`buildkit-attachable-exporter-id`) and may read the exporter's response from `exporter-md-*`
// headers. The client answers nothing and ends its side when it has stored everything, so the
// daemon's call ends only once the output is safely written.

/** The method the client serves. */
export const FILE_SEND_METHOD = "/moby.filesync.v1.FileSend/DiffCopy";
/** Names the output (its index among the request's exporters) the stream is for. */
export const EXPORTER_ID_HEADER = "buildkit-attachable-exporter-id";
/** Prefix of headers carrying the exporter's response (containerimage.digest, ...). */
export const EXPORTER_META_PREFIX = "exporter-md-";
/** Largest chunk per message: grpc-go refuses messages over 4 MiB; the tunnel prefers 1 MiB. */
export const MAX_CHUNK = 1 << 20;

/**
 * Header values BuildKit url-encodes when they hold non-ASCII characters, marking the key with
 * a `KEY-encoded: 1` companion header.
 */
export function encodeMetadata(md: Record<string, string>): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(md)) {
    const key = `${EXPORTER_META_PREFIX}${k}`.toLowerCase();
    if (/^[\x20-\x7e]*$/.test(v)) h.set(key, v);
    else {
      h.set(key, encodeURIComponent(v));
      h.set(`${key}-encoded`, "1");
    }
  }
  return h;
}

/** The exporter response a FileSend call carries in its headers. */
export function decodeMetadata(headers: Headers): Record<string, string> {
  const md: Record<string, string> = {};
  for (const [k, v] of headers) {
    if (!k.startsWith(EXPORTER_META_PREFIX) || k.endsWith("-encoded")) continue;
    const encoded = headers.get(`${k}-encoded`) === "1" || headers.get(`${k}-encoded`) === "true";
    md[k.slice(EXPORTER_META_PREFIX.length)] = encoded ? decodeURIComponent(v.replace(/\+/g, " ")) : v;
  }
  return md;
}
