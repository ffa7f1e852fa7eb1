// A daemon stand-in for the crash-recovery test: opens an executor on argv[2], starts a long
// container on an overlay rootfs (lower, upper, work in argv[3..5]) and prints READY once it
// runs. The test then SIGKILLs this process mid-run.
import { RuncExecutor } from "../runc.ts";

const [root, lower, upper, work] = process.argv.slice(2) as [string, string, string, string];
const executor = await RuncExecutor.open({ root });
await executor.run(
  "crashed",
  [
    {
      type: "overlay",
      source: "overlay",
      options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`],
    },
  ],
  [
    { type: "tmpfs", dest: "/scratch" },
    { type: "secret", dest: "/run/secret", data: Buffer.from("hush"), uid: 0, gid: 0, mode: 0o400 },
  ],
  {
    args: ["/bin/sh", "-c", "echo ready; sleep 1000"],
    env: [],
    cwd: "/",
    network: "none",
    security: "sandbox",
  },
  {
    stdout: (c) => {
      if (c.toString().includes("ready")) process.stdout.write("READY\n");
    },
  },
);
