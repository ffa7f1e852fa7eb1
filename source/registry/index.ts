// The registry client's public surface: import from here.
export type { Challenge, Credentials, CredentialsProvider } from "./auth.ts";
export { parseChallenges } from "./auth.ts";
export type {
  ImageConfigResult,
  OperationOptions,
  RegistryClientOptions,
  ResolveOptions,
} from "./client.ts";
export { RegistryClient } from "./client.ts";
export type { RegistryErrorCode } from "./errors.ts";
export { isRegistryError, RegistryError } from "./errors.ts";
export type {
  Descriptor,
  ImageConfigFile,
  ImageIndex,
  ImageManifest,
  ImageRuntimeConfig,
} from "./manifest.ts";
export { MediaTypes } from "./manifest.ts";
export type { Platform } from "./platform.ts";
export { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformRank } from "./platform.ts";
export type { FetchBlobOptions, ResolvedImage } from "./pull.ts";
export { SOURCE_LABEL_PREFIX } from "./pull.ts";
export type { BlobOpener, PushBlobOptions, PushBlobResult, PushManifestOptions } from "./push.ts";
