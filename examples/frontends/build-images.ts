// Builds the frontend images shipped here (the Dockerfile frontend and the steps example) and
// pushes them to a registry or writes them as OCI layouts. `make frontend-images` runs it.
//
//   node examples/frontends/build-images.ts --registry 127.0.0.1:5000 [--prefix buildd] [--tag latest]
//   node examples/frontends/build-images.ts --oci-dir out/
//
// Then: buildctl build --frontend gateway.v0 --opt source=127.0.0.1:5000/buildd/dockerfile:latest ...
// or a Dockerfile starting with `# syntax=127.0.0.1:5000/buildd/dockerfile:latest`.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeOCILayout } from "../../test/oci-image.ts";
import { pushImage } from "../../test/oci-push.ts";
import { frontendImage } from "./image.ts";

const { values } = parseArgs({
  options: {
    registry: { type: "string" },
    prefix: { type: "string", default: "buildd" },
    tag: { type: "string", default: "latest" },
    "oci-dir": { type: "string" },
    insecure: { type: "boolean", default: false },
  },
  strict: true,
});
if (!values.registry && !values["oci-dir"]) {
  process.stderr.write(
    "usage: build-images.ts --registry HOST[:PORT] [--prefix P] [--tag T] [--insecure] | --oci-dir DIR\n",
  );
  process.exit(2);
}

const images = {
  dockerfile: join(import.meta.dirname, "dockerfile/main.ts"),
  steps: join(import.meta.dirname, "steps/main.ts"),
};
for (const [name, entry] of Object.entries(images)) {
  const img = await frontendImage({ entry });
  const repo = `${values.prefix}/${name}`;
  if (values["oci-dir"]) {
    const dir = join(values["oci-dir"], name);
    await writeOCILayout(dir, img, { tag: values.tag });
    console.log(`${name}: OCI layout ${dir} (tag ${values.tag}, ${img.digest})`);
  }
  if (values.registry) {
    const host = values.registry;
    const local = /^(localhost|127\.|\[::1\])/.test(host);
    const url = `${values.insecure || local ? "http" : "https"}://${host}`;
    const digest = await pushImage(url, `${repo}:${values.tag}`, img);
    console.log(`${name}: pushed ${host}/${repo}:${values.tag}@${digest}`);
  }
}
