// The few system calls Node does not offer that unpacking a layer needs: mknod (devices, fifos,
// overlay whiteouts) and extended attributes (file capabilities, overlay's opaque marker). One
// perl process (perl-base is part of every Debian system) makes them on request, over a pipe,
// so a layer with thousands of whiteouts costs one process, not thousands. Every call acts on
// the path itself and never follows a symlink there: lsetxattr/lgetxattr/llistxattr, and
// mknodat, which fails when the name exists.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { constants } from "node:os";
import { createInterface, type Interface } from "node:readline";

/** The kinds of special file {@link SyscallHelper.mknod} makes. */
export type SpecialFileKind = "char" | "block" | "fifo";

/** Syscall numbers (lsetxattr, lgetxattr, llistxattr, mknodat) for the architectures we run on. */
const SYSCALLS: Record<string, [number, number, number, number]> = {
  x64: [189, 192, 195, 259],
  arm64: [6, 9, 12, 33],
};

const PERL_SCRIPT = String.raw`
use strict; use warnings; $| = 1;
my ($SETX, $GETX, $LISTX, $MKNODAT) = map { $_ + 0 } @ARGV;
my $SIZE = 65536;
while (my $line = <STDIN>) {
  chomp $line;
  my ($op, @a) = map { pack("H*", $_) } split(/ /, $line, -1);
  my $r; my $out = "";
  if ($op eq "setx") {
    $r = syscall($SETX, $a[0], $a[1], $a[2], length($a[2]) + 0, 0);
  } elsif ($op eq "getx") {
    my $buf = "\0" x $SIZE;
    $r = syscall($GETX, $a[0], $a[1], $buf, $SIZE + 0);
    $out = unpack("H*", substr($buf, 0, $r)) if $r >= 0;
  } elsif ($op eq "listx") {
    my $buf = "\0" x $SIZE;
    $r = syscall($LISTX, $a[0], $buf, $SIZE + 0);
    $out = unpack("H*", substr($buf, 0, $r)) if $r >= 0;
  } elsif ($op eq "mknod") {
    my ($mode, $maj, $min) = map { $_ + 0 } @a[1..3];
    my $dev = (($maj & 0xfff) << 8) | (($maj >> 12) << 32) | ($min & 0xff) | (($min >> 8) << 20);
    $r = syscall($MKNODAT, -100, $a[0], $mode, $dev);
  } else {
    print "E 22\n"; next;
  }
  if ($r < 0) { print "E ", ($! + 0), "\n"; } else { print "0 $out\n"; }
}
`;

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/** A failed system call, shaped like Node's own errors (`code` is "EPERM", "ENOTSUP", ...). */
export class SyscallError extends Error {
  readonly code: string;
  readonly errno: number;

  constructor(call: string, path: string, errno: number) {
    const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
    super(`${call} ${JSON.stringify(path)}: ${code}`);
    this.name = "SyscallError";
    this.code = code;
    this.errno = errno;
  }
}

/** The helper process; started on first use, so layers without devices or xattrs never spawn it. */
export class SyscallHelper {
  #child: ChildProcessWithoutNullStreams | undefined;
  #lines: Interface | undefined;
  #waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #failed: Error | undefined;

  /** Creates a device node or fifo at `path` (which must not exist) with permission bits `mode`. */
  async mknod(path: string, kind: SpecialFileKind, mode: number, major = 0, minor = 0): Promise<void> {
    const type = kind === "char" ? S_IFCHR : kind === "block" ? S_IFBLK : S_IFIFO;
    await this.#call("mknod", path, [path, String(type | (mode & 0o7777)), String(major), String(minor)]);
  }

  /** Sets an extended attribute on `path` itself (a symlink is not followed). */
  async setXattr(path: string, name: string, value: Buffer): Promise<void> {
    await this.#call("setx", path, [path, name, value]);
  }

  /** Reads an extended attribute; undefined when the file does not have it. */
  async getXattr(path: string, name: string): Promise<Buffer | undefined> {
    try {
      return Buffer.from(await this.#call("getx", path, [path, name]), "hex");
    } catch (e) {
      if (e instanceof SyscallError && e.code === "ENODATA") return undefined;
      throw e;
    }
  }

  /** Names of the extended attributes of `path` itself. */
  async listXattrs(path: string): Promise<string[]> {
    const raw = Buffer.from(await this.#call("listx", path, [path]), "hex");
    return raw
      .toString("utf8")
      .split("\0")
      .filter((n) => n !== "");
  }

  /** Ends the helper process. */
  async close(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    child.stdin.end();
    await exited;
  }

  async #call(op: string, path: string, args: (string | Buffer)[]): Promise<string> {
    const child = this.#start();
    const line = [op, ...args].map((a) => Buffer.from(a).toString("hex")).join(" ");
    const answer = new Promise<string>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    child.stdin.write(`${line}\n`);
    const reply = await answer;
    if (reply.startsWith("E ")) {
      throw new SyscallError(op === "mknod" ? "mknod" : `${op}attr`, path, Number(reply.slice(2)));
    }
    return reply.slice(2);
  }

  #start(): ChildProcessWithoutNullStreams {
    if (this.#failed) throw this.#failed;
    if (this.#child) return this.#child;
    const numbers = SYSCALLS[process.arch];
    if (numbers === undefined) {
      throw new Error(
        `making device files and setting xattrs is not supported on ${process.arch} yet (no syscall numbers)`,
      );
    }
    const child = spawn("perl", ["-e", PERL_SCRIPT, ...numbers.map(String)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const fail = (why: string) => {
      this.#failed ??= new Error(`the syscall helper (perl) ${why}${stderr ? `: ${stderr.trim()}` : ""}`);
      for (const w of this.#waiting.splice(0)) w.reject(this.#failed);
    };
    child.on("error", (e) => fail(`could not run: ${e.message}`));
    child.on("close", (code, signal) => {
      if (this.#waiting.length > 0) fail(`exited (${signal ?? code}) with calls pending`);
    });
    // EPIPE on a dead helper surfaces through "close"; do not let it crash the process.
    child.stdin.on("error", () => {});
    this.#lines = createInterface({ input: child.stdout });
    this.#lines.on("line", (l) => this.#waiting.shift()?.resolve(l));
    this.#child = child;
    return child;
  }
}
