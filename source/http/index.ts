// The http source: parse the op, download into the content store (checksum, ETag,
// Last-Modified), write the blob out as one file. The worker turns the directory into a snapshot
// and keys it with `httpCacheKey`.
export { HttpSourceError, type HttpSourceErrorCode } from "./errors.ts";
export {
  HttpFetcher,
  type HttpFetcherOptions,
  type HttpFetchOptions,
  type HttpFetchResult,
  type HttpProgress,
  type WriteFileOptions,
} from "./fetcher.ts";
export {
  DEFAULT_HTTP_FILENAME,
  type HttpSourceId,
  httpCacheKey,
  httpFileName,
  httpMtime,
  parseHttpIdentifier,
} from "./identifier.ts";
