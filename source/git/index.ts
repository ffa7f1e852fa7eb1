// The git source: parse the op, resolve a ref to a commit, check a commit out into a directory.
// The worker turns the directory into a snapshot and keys it with `gitCacheKey`.
export type { CheckoutResult, Head } from "./checkout.ts";
export type { GitOutput } from "./command.ts";
export { GitSourceError, type GitSourceErrorCode } from "./errors.ts";
export { type CheckoutOptions, type GitAccess, GitFetcher, type GitFetcherStats } from "./fetcher.ts";
export {
  type GitAuth,
  type GitSourceId,
  gitAuthSecretNames,
  gitCacheKey,
  isCommitId,
  parseGitIdentifier,
  resolveGitAuth,
} from "./identifier.ts";
