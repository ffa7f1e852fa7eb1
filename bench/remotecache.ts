// Benchmark (not a test): the registry cache between two daemons. Daemon A builds 5 steps, one
// of which writes a 200 MB layer (random bytes: it does not compress), and exports the cache to
// a loopback registry; daemon B starts empty and rebuilds with the cache imported; then B
// rebuilds again with no change. Wall times, and the bytes each phase moved through the
// registry (cache repository and base image separately).
//
//   node bench/remotecache.ts [--mb 200] [--mode max]
import { parseArgs } from "node:util";
import { image, type State } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startTestDaemon, type TestDaemon } from "../test/daemon.ts";
import { startRegistry } from "../test/registry.ts";

const { values } = parseArgs({
  options: { mb: { type: "string", default: "200" }, mode: { type: "string", default: "max" } },
});
const MB = Number(values.mb);

const registry = await startRegistry();
await pushBusyboxImage(registry);
const busybox = `${registry.host}/busybox:latest`;
const cacheRef = `${registry.host}/bench/cache:latest`;

let s: State = image(busybox);
s = s.run({ shell: `dd if=/dev/urandom of=/big bs=1M count=${MB} 2>/dev/null` }).root();
for (let i = 2; i <= 5; i++) s = s.run({ shell: `echo step ${i} > /step${i}` }).root();
const def = s.marshal().bytes;

/** Bytes the registry sent and received since the last reset, by repository. */
function traffic(): { cache: { in: number; out: number; blobGets: number }; base: number } {
  const out = { cache: { in: 0, out: 0, blobGets: 0 }, base: 0 };
  for (const [path, st] of Object.entries(registry.stats())) {
    if (path.startsWith("/v2/bench/cache/")) {
      out.cache.in += st.bytesIn;
      out.cache.out += st.bytesOut;
      if (path.includes("/blobs/")) out.cache.blobGets += st.methods.GET ?? 0;
    } else out.base += st.bytesOut;
  }
  registry.resetStats();
  return out;
}

async function timed(d: TestDaemon, what: string, args: string[]): Promise<number> {
  const started = performance.now();
  const r = await d.buildctl(["build", "--progress=quiet", ...args], { input: def });
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr}`);
  return (performance.now() - started) / 1000;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MiB`;
const a = await startTestDaemon(undefined);
const b = await startTestDaemon(undefined);
try {
  const build = await timed(a, "A build", []);
  traffic();
  const exported = await timed(a, "A export", [
    "--export-cache",
    `type=registry,ref=${cacheRef},mode=${values.mode}`,
  ]);
  const up = traffic();
  const cold = await timed(b, "B cold import", ["--import-cache", `type=registry,ref=${cacheRef}`]);
  const down = traffic();
  const warm = await timed(b, "B no-change", ["--import-cache", `type=registry,ref=${cacheRef}`]);
  const again = traffic();
  console.log(`5-step build with a ${MB} MB layer, mode=${values.mode}`);
  console.log(
    `A: build ${build.toFixed(2)} s; cached build + export ${exported.toFixed(2)} s, sent ${mib(up.cache.in)}`,
  );
  console.log(
    `B cold: ${cold.toFixed(2)} s, cache repo sent ${mib(down.cache.out)} in ${down.cache.blobGets} blob GETs, base image ${mib(down.base)}`,
  );
  console.log(
    `B no change: ${warm.toFixed(2)} s, cache repo sent ${again.cache.out} bytes in ${again.cache.blobGets} blob GETs, base image ${again.base} bytes`,
  );
} finally {
  await a.close();
  await b.close();
  await registry.stop();
}
