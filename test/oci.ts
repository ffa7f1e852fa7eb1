// One import for suites that need images: layers, images, indexes, OCI layouts, pushing, and the
// hostile variants for negative tests. The pieces live in oci-*.ts, split by concern.
export * from "./oci-hostile.ts";
export * from "./oci-image.ts";
export * from "./oci-layer.ts";
export * from "./oci-push.ts";
