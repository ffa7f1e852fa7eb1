// Pushes the demo's base images (busybox, and busybox plus the Node runtime) to a registry,
// made from this machine's busybox-static and Node: the demo needs no internet.
//   bin/node scripts/demo-images.ts http://127.0.0.1:5055
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { pushNodeImage } from "../test/node-image.ts";

const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: demo-images.ts REGISTRY_URL\n");
  process.exit(2);
}
await pushBusyboxImage({ url });
await pushNodeImage({ url });
process.stdout.write(`pushed busybox:latest and node:24 to ${url}\n`);
