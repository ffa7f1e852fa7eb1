// A frontend image for the gateway's tests: one bundle, its behaviour picked by `--opt mode=`.
// Each mode is a way a real frontend works or fails.
import { build as buildOp, image, mkfile, scratch } from "../../../llb/index.ts";
import { type GatewayClient, run } from "../client/index.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function hello(c: GatewayClient) {
  const base = c.opts.base!;
  const img = await c.resolveImageConfig(base);
  const st = image(base)
    .run({
      shell: `echo "hello from ${c.opts.greeting ?? "a frontend"}" > /hello.txt; mkdir -p /d/sub; touch /d/a /d/b.txt`,
    })
    .root();
  const { ref } = await c.solve({ definition: st });
  if (!ref) throw new Error("no ref");
  const hello = text(await ref.readFile("/hello.txt"));
  const part = text(await ref.readFile("/hello.txt", { offset: 6, length: 4 }));
  const names = (await ref.readDir("/d")).map((s) => `${s.path}${s.isDir ? "/" : ""}`);
  const txt = (await ref.readDir("/d", { include: "*.txt" })).map((s) => s.path);
  const stat = await ref.statFile("/hello.txt");
  const inputs = await c.inputs();
  await c.warn("a warning from the frontend", { detail: ["with detail"] });
  console.log("this goes to stderr, not into the gRPC stream");
  // Build on the result: the ref carries its definition.
  const more = ref.toState().run({ shell: "cat /hello.txt > /copy.txt" }).root();
  const { ref: final } = await c.solve({ definition: more });
  return {
    ref: final,
    imageConfig: {
      config: {
        Env: (img.config.config as { Env?: string[] }).Env,
        Labels: {
          hello: hello.trim(),
          part,
          names: names.join(","),
          txt: txt.join(","),
          size: String(stat.size),
          inputs: Object.keys(inputs).sort().join(","),
          session: c.sessionId === "" ? "none" : "set",
          caps: c.supports("readdir") && c.supports("statfile") ? "yes" : "no",
        },
      },
    },
    metadata: { "frontend.mode": "hello" },
  };
}

/** Runs the Dockerfile frontend on a Dockerfile it writes, then builds on that, and runs a BuildOp. */
async function nested(c: GatewayClient) {
  const base = c.opts.base!;
  const dockerfile = `FROM ${base}\nRUN echo from-generated-dockerfile > /gen.txt\nENV GENERATED=1\n`;
  const df = scratch().file(mkfile("/Dockerfile", 0o644, dockerfile));
  const inner = await c.solve({ frontend: "dockerfile.v0", frontendInputs: { dockerfile: df } });
  if (!inner.ref) throw new Error("the Dockerfile frontend returned no ref");
  const config = JSON.parse(text(inner.metadata["containerimage.config"]!)) as { config: { Env: string[] } };
  // Another definition, written by an earlier step, solved by a BuildOp.
  const leaf = image(base).run({ shell: "echo from-build-op > /op.txt" }).root();
  const defFile = scratch().file(mkfile("/def.llb", 0o644, leaf.marshal().bytes));
  const viaOp = buildOp(defFile, { filename: "def.llb" });
  const { ref: opRef } = await c.solve({ definition: viaOp });
  const fromOp = text(await opRef!.readFile("/op.txt"));
  const merged = inner.ref
    .toState()
    .run({ shell: `echo "${fromOp.trim()}" > /op-copy.txt; cat /gen.txt > /both.txt` })
    .root();
  const { ref } = await c.solve({ definition: merged });
  return { ref, imageConfig: config };
}

const modes: Record<string, (c: GatewayClient) => Promise<Awaited<ReturnType<typeof hello>> | object>> = {
  hello,
  nested,
  error: async () => {
    throw new Error("the build file has a mistake on line 3");
  },
  crash: async (c) => {
    await c.solve({ definition: image(c.opts.base!).run({ shell: "echo before-crash > /x" }).root() });
    process.stderr.write("frontend: about to crash\n");
    process.exit(3);
  },
  garbage: async () => {
    process.stdout.write("this is not HTTP/2 at all\n".repeat(100));
    await new Promise((r) => setTimeout(r, 60_000));
    return {};
  },
  "unknown-ref": async (c) => {
    await c.return({ ref: { id: "not-a-ref-of-mine" } as never });
    process.exit(0);
  },
  "no-return": async () => process.exit(0),
  hang: async (c) => {
    await c.solve({ definition: image(c.opts.base!).run({ shell: "echo before-hang > /x" }).root() });
    process.stderr.write("frontend: hanging\n");
    await new Promise(() => {});
    return {};
  },
  linger: async (c) => {
    const { ref } = await c.solve({
      definition: image(c.opts.base!).run({ shell: "echo lingered > /l.txt" }).root(),
    });
    await c.return({ ref });
    process.stderr.write("frontend: returned, now lingering\n");
    await new Promise(() => {});
    return {};
  },
  "step-fails": async (c) => {
    await c.solve({ definition: image(c.opts.base!).run({ shell: "echo step-output; exit 5" }).root() });
    return {};
  },
};

await run(async (c) => {
  const mode = modes[c.opts.mode ?? "hello"];
  if (!mode) throw new Error(`unknown mode ${c.opts.mode}`);
  return (await mode(c)) as Awaited<ReturnType<typeof hello>>;
});
