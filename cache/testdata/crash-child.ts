// A process the crash tests SIGKILL: it opens the cache stack in a directory, does one scenario's
// work and reports on stdout what it has durably made, so the parent can kill it at a chosen point
// and check, after reopening, that nothing reported was lost and nothing half-made remains.
// Everything it mounts is mounted under the test's directory, which the test cleans up.
//
// argv[2] is JSON: { root, driver, scenario, crashAt? }. Lines on stdout:
//   REF <id> <tree as JSON>   a committed ref that must survive, with its files
//   MUTABLE <key> <tree>      a keyed mutable ref that must survive, with its files
//   AT <point>                the armed crash point was reached; the process now waits to be killed
//   READY                     the scenario is done and the process waits to be killed
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { mountAll, withMounted } from "../../snapshot/mount.ts";
import { describeMounts } from "../../snapshot/testing.ts";
import type { SnapshotterDriver } from "../../snapshot/types.ts";
import type { CacheManager } from "../manager.ts";
import { openTestCache, writeRef } from "../testing.ts";
import type { ImmutableRef } from "../types.ts";

type Args = { root: string; driver: SnapshotterDriver; scenario: string; crashAt?: string; seed?: number };
const args = JSON.parse(process.argv[2]!) as Args;

let armed = false;
const forever = () => new Promise<never>(() => {});
const say = (line: string) => process.stdout.write(`${line}\n`);

const c = await openTestCache(args.root, {
  driver: args.driver,
  hooks: {
    at: async (point) => {
      if (armed && point === args.crashAt) {
        say(`AT ${point}`);
        await forever();
      }
    },
  },
});
const cm: CacheManager = c.cm;

async function report(ref: ImmutableRef): Promise<void> {
  say(`REF ${ref.id} ${JSON.stringify(await describeMounts(await ref.mount(), cm.root))}`);
}

/** A little random generator, so a run can be repeated from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

switch (args.scenario) {
  case "commit": {
    const base = await writeRef(cm, undefined, { f: "base" });
    await report(base);
    armed = true;
    const m = await cm.newMutable(base, { description: "child" });
    await withMounted(await m.mount(), (d) => writeFile(join(d, "g"), "child"), { base: cm.root });
    await m.commit();
    armed = false;
    say("READY");
    break;
  }
  case "remove": {
    const base = await writeRef(cm, undefined, { f: "base" });
    const child = await writeRef(cm, base, { g: "child" });
    await report(base);
    await child.release();
    armed = true;
    for await (const _ of cm.prune({ filters: [`id==${child.id}`] })) {
      // removed
    }
    say("READY");
    break;
  }
  case "active": {
    // Work in progress everywhere: refs held, mutable refs mounted outside the snapshotter root.
    const base = await writeRef(cm, undefined, { "bin/tool": "v1", "etc/conf": "a" });
    const other = await writeRef(cm, undefined, { "etc/other": "b" });
    const merged = await cm.merge([base, other]);
    for (const r of [base, other, merged]) await report(r);
    const keyed = await cm.getMutableByKey("cache:/var/cache", { recordType: "exec.cachemount" });
    const outside = join(args.root, "outside");
    await mkdir(join(outside, "keyed"), { recursive: true });
    await mkdir(join(outside, "work"), { recursive: true });
    await mountAll(await keyed.mount(), join(outside, "keyed"));
    await writeFile(join(outside, "keyed", "warm"), "cache");
    say(`MUTABLE cache:/var/cache ${JSON.stringify({ warm: "file 644 0:0 cache" })}`);
    const work = await cm.newMutable(merged, { description: "RUN in progress" });
    await mountAll(await work.mount(), join(outside, "work"));
    await writeFile(join(outside, "work", "half-written"), "x");
    say("READY");
    break;
  }
  case "random": {
    // Keeps making refs, merges, diffs and throwaway records until it is killed.
    const rand = rng(args.seed ?? 1);
    const refs: ImmutableRef[] = [];
    for (let i = 0; ; i++) {
      const pick = () => refs[Math.floor(rand() * refs.length)]!;
      const op = refs.length < 2 ? 0 : Math.floor(rand() * 6);
      if (op <= 1) {
        const parent = op === 1 ? pick() : undefined;
        const ref = await writeRef(cm, parent, {
          [`f${i}`]: `v${i}`,
          ...(parent && rand() < 0.5 ? { [`f${i - 1}`]: null } : {}),
        });
        refs.push(ref);
        await report(ref);
      } else if (op === 2) {
        const ref = await cm.merge([pick(), pick()]);
        refs.push(ref);
        await report(ref);
      } else if (op === 3) {
        const ref = await cm.diff(pick(), pick());
        refs.push(ref);
        await report(ref);
      } else if (op === 4) {
        // A throwaway mutable ref, released without commit: removed at once.
        const m = await cm.newMutable(pick());
        await withMounted(await m.mount(), (d) => writeFile(join(d, "scratch"), "x"), { base: cm.root });
        await m.release();
      } else {
        // Internal records nobody reported, pruned right away.
        const junk = await writeRef(cm, undefined, { junk: "x" }, { recordType: "internal" });
        await junk.release();
        for await (const _ of cm.prune({ all: true, filters: ["type==internal"] })) {
          // removed
        }
      }
    }
  }
  default:
    throw new Error(`unknown scenario ${args.scenario}`);
}
await forever();
