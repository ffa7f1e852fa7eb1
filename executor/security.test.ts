// Isolation with real runc: network modes, the sandbox's capabilities and masked paths, and the
// insecure mode that only a daemon allowing it may grant.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { after, test } from "node:test";
import { capabilitiesFromMask, DEFAULT_CAPABILITIES } from "./spec.ts";
import { collect, overlayRoot, sharedBusybox, shell, testExecutor } from "./testutil.ts";

after(async () => (await sharedBusybox()).cleanup());

test("network none has only lo; host shares the host's interfaces", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const netDevs = async (network: "none" | "host") => {
    const out = collect();
    await executor.run(
      "",
      mounts,
      [],
      shell("ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1", { network }),
      out.io,
    );
    return out.stdout();
  };
  assert.equal(await netDevs("none"), "lo\n    lo\n");
  const host = (await readdir("/sys/class/net")).sort();
  assert.ok(host.length > 1, "the host has more than lo");
  const seen = (await netDevs("host")).trim().split(/\s+/);
  for (const dev of host) assert.ok(seen.includes(dev), `host network sees ${dev}`);
});

test("the sandbox has Docker's capabilities, a read-only /sys and masked /proc paths", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "",
    mounts,
    [],
    shell(
      "grep ^CapEff: /proc/self/status; " +
        "mkdir -p /mnt/t; mount -t tmpfs none /mnt/t 2>/dev/null && echo mounted || echo no-mount; " +
        "touch /sys/kernel/x 2>/dev/null && echo sys-rw || echo sys-ro; " +
        "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo procsys-rw || echo procsys-ro; " +
        "wc -c < /proc/timer_list",
    ),
    out.io,
  );
  const [capLine, mount, sys, procSys, timerList] = out.stdout().trim().split("\n");
  const caps = capabilitiesFromMask(/CapEff:\s*(\S+)/.exec(capLine!)![1]!);
  assert.deepEqual(caps.sort(), [...DEFAULT_CAPABILITIES].sort());
  assert.deepEqual([mount, sys, procSys, timerList?.trim()], ["no-mount", "sys-ro", "procsys-ro", "0"]);
  assert.ok((await readFile("/proc/timer_list")).length > 0, "the host's /proc/timer_list is not empty");
});

test("insecure is refused unless the daemon allows it, and then has every capability and device", async (t) => {
  const { executor: strict } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  await assert.rejects(
    strict.run("", mounts, [], shell("true", { security: "insecure" }), {}),
    /security mode "insecure": not allowed by this daemon/,
  );
  const { executor } = await testExecutor(t, { allowInsecure: true });
  const out = collect();
  await executor.run(
    "",
    mounts,
    [],
    shell(
      "grep ^CapEff: /proc/self/status; " +
        "mkdir -p /mnt/t; mount -t tmpfs none /mnt/t && echo mounted && umount /mnt/t; " +
        "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; ls /dev",
      { security: "insecure" },
    ),
    out.io,
  );
  const lines = out.stdout().trim().split("\n");
  const caps = capabilitiesFromMask(/CapEff:\s*(\S+)/.exec(lines[0]!)![1]!);
  const status = await readFile("/proc/self/status", "utf8");
  const own = capabilitiesFromMask(/CapBnd:\s*(\S+)/.exec(status)![1]!);
  assert.ok(caps.includes("CAP_SYS_ADMIN"));
  assert.deepEqual(caps.sort(), own.sort());
  assert.equal(lines[1], "mounted");
  assert.equal(lines[2], "rw");
  // Host devices beyond runc's defaults are there (the host's block devices, for one).
  const hostBlock = (await readdir("/sys/class/block")).filter((d) => !d.startsWith("loop"));
  const devs = lines.slice(3);
  assert.ok(
    hostBlock.length === 0 || hostBlock.some((d) => devs.includes(d)),
    `host block devices in ${devs}`,
  );
});
