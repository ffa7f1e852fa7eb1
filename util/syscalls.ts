// mount(2) and umount2(2) for Node, which has neither: one long-lived perl process (perl-base is
// Essential on Debian) makes the system calls on request. Spawning mount(8) and umount(8) for each
// run costs two process starts, which on a busy host is a third of what `runc run` itself costs.
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";

/** System call numbers by architecture; elsewhere callers fall back to mount(8). */
const SYSCALL_NUMBERS: Partial<Record<string, { mount: number; umount2: number }>> = {
  x64: { mount: 165, umount2: 166 },
  arm64: { mount: 40, umount2: 39 },
};

// Requests are lines of space-separated fields, each "x" + hex (never empty, any bytes); the
// answer is a line with 0 or the errno. perl's syscall() passes numbers as integers and strings
// as pointers, so numeric fields are made numbers with "+ 0" and an empty data string becomes NULL.
const SCRIPT = `
$| = 1;
while (my $line = <STDIN>) {
  chomp $line;
  my @a = map { pack("H*", substr($_, 1)) } split(/ /, $line);
  my $op = shift @a;
  my $r = -1;
  $! = 22;
  if ($op eq "m" && @a == 5) {
    my ($src, $tgt, $type, $flags, $data) = @a;
    $r = syscall(MOUNT, $src, $tgt, $type, $flags + 0, length($data) ? $data : 0);
  } elsif ($op eq "u" && @a == 2) {
    my ($tgt, $flags) = @a;
    $r = syscall(UMOUNT2, $tgt, $flags + 0);
  }
  print(($r == -1 ? $! + 0 : 0), "\\n");
}
`;

/** An errno as a Node-style error: `code` is the errno name ("EBUSY"). */
export class SyscallError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(what: string, errno: number) {
    const code = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    super(`${what}: ${code}`);
    this.code = code;
    this.errno = errno;
  }
}

type Pending = { resolve: (errno: number) => void; reject: (e: Error) => void };

/** The perl process and its queue of requests, answered in order. */
class SyscallServer {
  readonly #child: ChildProcessByStdio<Writable, Readable, null>;
  readonly #pending: Pending[] = [];
  #buffer = "";
  #dead: Error | undefined;

  constructor(numbers: { mount: number; umount2: number }) {
    const script = SCRIPT.replace("MOUNT,", `${numbers.mount},`).replace("UMOUNT2,", `${numbers.umount2},`);
    this.#child = spawn("perl", ["-e", script], { stdio: ["pipe", "pipe", "inherit"] });
    this.#child.stdout.setEncoding("utf8").on("data", (d: string) => this.#onData(d));
    this.#child.stdin.on("error", () => {}); // reported through "exit"
    this.#child.on("error", (e) => this.#fail(e));
    this.#child.on("exit", (code, signal) =>
      this.#fail(new Error(`the syscall helper exited (${code ?? signal})`)),
    );
    this.#idle();
  }

  /** Whether the helper could not start or died; the caller then starts another or falls back. */
  get dead(): Error | undefined {
    return this.#dead;
  }

  call(fields: string[]): Promise<number> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const line = fields.map((f) => "x" + Buffer.from(f).toString("hex")).join(" ");
    if (this.#pending.length === 0) this.#busy();
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#child.stdin.write(line + "\n");
    });
  }

  #onData(d: string): void {
    this.#buffer += d;
    for (let nl = this.#buffer.indexOf("\n"); nl >= 0; nl = this.#buffer.indexOf("\n")) {
      const answer = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 1);
      this.#pending.shift()?.resolve(Number(answer));
    }
    if (this.#pending.length === 0) this.#idle();
  }

  #fail(e: Error): void {
    this.#dead ??= e;
    for (const p of this.#pending.splice(0)) p.reject(this.#dead);
    this.#idle();
  }

  // An idle helper must not keep the daemon (or a test) alive; a busy one must.
  #idle(): void {
    this.#child.unref();
    (this.#child.stdout as Readable & { unref?: () => void }).unref?.();
    (this.#child.stdin as Writable & { unref?: () => void }).unref?.();
  }

  #busy(): void {
    this.#child.ref();
    (this.#child.stdout as Readable & { ref?: () => void }).ref?.();
    (this.#child.stdin as Writable & { ref?: () => void }).ref?.();
  }
}

let server: SyscallServer | undefined;

/** The helper, started on first use (and again if it died); undefined where it cannot run. */
function syscallServer(): SyscallServer | undefined {
  const numbers = SYSCALL_NUMBERS[process.arch];
  if (numbers === undefined) return undefined;
  if (server === undefined || server.dead !== undefined) server = new SyscallServer(numbers);
  return server;
}

/** True when mount(2) goes through the helper; false means use mount(8). */
export function syscallsSupported(): boolean {
  return SYSCALL_NUMBERS[process.arch] !== undefined;
}

async function call(what: string, fields: string[]): Promise<void> {
  const s = syscallServer();
  if (s === undefined) throw new Error(`${what}: no syscall helper for ${process.arch}`);
  const errno = await s.call(fields);
  if (errno !== 0) throw new SyscallError(what, errno);
}

/** mount(2). `data` "" is passed as NULL. */
export function mountSyscall(
  source: string,
  target: string,
  fstype: string,
  flags: number,
  data: string,
): Promise<void> {
  return call(`mounting ${source} at ${target}`, ["m", source, target, fstype, String(flags), data]);
}

/** umount2(2). */
export function umountSyscall(target: string, flags: number): Promise<void> {
  return call(`unmounting ${target}`, ["u", target, String(flags)]);
}
