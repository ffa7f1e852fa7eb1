// The OCI runtime spec (config.json) for one run: the defaults of Docker/containerd for a build
// step (namespaces, capabilities, /proc, /dev, read-only /sys, masked paths), plus the run's
// process, user and mounts. No seccomp profile is applied (see executor/README.md).
import type { NetworkMode, SecurityMode } from "./types.ts";
import type { ProcessUser } from "./user.ts";

/** A mount as the OCI runtime spec lists it. */
export interface SpecMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** A device node the container gets (insecure mode: all of the host's). */
export interface SpecDevice {
  path: string;
  type: "c" | "b";
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** An rlimit as the spec lists it. */
export interface SpecRlimit {
  type: string;
  soft: number;
  hard: number;
}

/** Everything `buildSpec` needs: already resolved and validated by the executor. */
export interface SpecInput {
  rootPath: string;
  readonlyRoot: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: ProcessUser;
  hostname: string;
  network: NetworkMode;
  security: SecurityMode;
  /** Capabilities by name ("CAP_CHOWN"), already limited to what the daemon holds. */
  capabilities: string[];
  rlimits: SpecRlimit[];
  /** Mounts after the system ones, in mount order. */
  mounts: SpecMount[];
  devices: SpecDevice[];
  cgroupsPath: string;
}

/** Docker's default capability set, what a build step gets in `sandbox` mode. */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
] as const;

/** Capability names by number (linux/capability.h), for reading a capability mask. */
export const CAPABILITY_NAMES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
] as const;

/** The names of the capabilities set in a hex mask from /proc/<pid>/status (CapBnd, CapEff). */
export function capabilitiesFromMask(hexMask: string): string[] {
  const mask = BigInt(`0x${hexMask}`);
  return CAPABILITY_NAMES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/** Paths Docker hides from a container: kernel internals that leak host information. */
export const MASKED_PATHS = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

/** Paths Docker makes read-only: writing them would change the host kernel. */
export const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** The kernel filesystems every container gets, containerd's defaults (/sys read-only unless insecure). */
export function systemMounts(security: SecurityMode): SpecMount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/sys",
      type: "sysfs",
      source: "sysfs",
      options: ["nosuid", "noexec", "nodev", security === "insecure" ? "rw" : "ro"],
    },
  ];
}

/** The OCI runtime spec, as the object to write to config.json. */
export function buildSpec(input: SpecInput): Record<string, unknown> {
  const insecure = input.security === "insecure";
  const namespaces = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  // A new, empty network namespace has only `lo`, which runc brings up: that is network "none".
  if (input.network === "none") namespaces.push({ type: "network" });
  const caps = input.capabilities;
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: {
        uid: input.user.uid,
        gid: input.user.gid,
        ...(input.user.additionalGids.length > 0 ? { additionalGids: input.user.additionalGids } : {}),
      },
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: input.rlimits,
      noNewPrivileges: false,
    },
    root: { path: input.rootPath, readonly: input.readonlyRoot },
    hostname: input.hostname,
    mounts: [...systemMounts(input.security), ...input.mounts],
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources: { devices: [{ allow: insecure, access: "rwm" }] },
      devices: input.devices,
      maskedPaths: insecure ? [] : MASKED_PATHS,
      readonlyPaths: insecure ? [] : READONLY_PATHS,
    },
  };
}
