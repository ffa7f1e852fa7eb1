// The steps frontend: reads a JSON build file (`build.json`, or `--opt filename=`) from the
// "dockerfile" input or local dir, converts it to LLB, and returns the target with its image
// config. A step with a `dockerfile` runs the Dockerfile frontend inside this build.
import { type GatewayClient, run, stateFromDefinition } from "../../../frontend/gateway/client/index.ts";
import { hostPlatform, local, mkfile, parsePlatform, scratch } from "../../../llb/index.ts";
import { type ImageConfig, stepsToLLB } from "./convert.ts";
import { parseStepsFile, StepsFileError } from "./format.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function build(c: GatewayClient) {
  const filename = c.opts.filename || "build.json";
  const inputs = c.supports("frontend.inputs") ? await c.inputs() : {};
  const fileSource =
    inputs.dockerfile ??
    local("dockerfile", {
      include: [filename],
      sessionId: c.sessionId || undefined,
      sharedKeyHint: filename,
      customName: `[internal] load build file ${filename}`,
    });
  const { ref } = await c.solve({ definition: fileSource });
  if (!ref) throw new Error(`the build file ${filename} was not found`);
  const source = await ref.readFile(filename).catch((e: Error) => {
    throw new Error(`reading the build file ${filename}: ${e.message}`);
  });
  const args = Object.fromEntries(
    Object.entries(c.opts)
      .filter(([k]) => k.startsWith("build-arg:"))
      .map(([k, v]) => [k.slice("build-arg:".length), v]),
  );
  let file: ReturnType<typeof parseStepsFile>;
  try {
    file = parseStepsFile(text(source), args);
  } catch (e) {
    if (e instanceof StepsFileError) throw new Error(`${filename}: ${e.message}`);
    throw e;
  }
  const platform = c.opts.platform ? parsePlatform(c.opts.platform) : hostPlatform();
  const context = inputs.context
    ? stateFromDefinition(inputs.context)
    : local("context", {
        sessionId: c.sessionId || undefined,
        sharedKeyHint: "context",
        customName: "[internal] load build context",
      });
  const { state, image } = await stepsToLLB(
    file,
    {
      platform,
      context,
      resolveImage: async (r) => {
        const res = await c.resolveImageConfig(r, { platform });
        return { digest: res.digest, config: res.config as Partial<ImageConfig> };
      },
      buildDockerfile: async (dockerfile, step) => {
        const res = await c.solve({
          frontend: "dockerfile.v0",
          frontendOpts: { platform: `${platform.os}/${platform.architecture}` },
          frontendInputs: {
            dockerfile: scratch().file(mkfile("/Dockerfile", 0o644, dockerfile)),
            ...(inputs.context ? { context: inputs.context } : {}),
          },
        });
        if (!res.ref) throw new Error(`${filename}: step ${step}: the Dockerfile built nothing`);
        const meta = res.metadata["containerimage.config"];
        return {
          state: res.ref.toState(),
          config: meta ? (JSON.parse(text(meta)) as Partial<ImageConfig>) : undefined,
        };
      },
    },
    c.opts.target || file.target,
  );
  const { ref: out } = await c.solve({ definition: state.marshal({ platform }).bytes });
  return { ref: out, imageConfig: image };
}

await run(build);
