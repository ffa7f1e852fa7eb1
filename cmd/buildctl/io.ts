// Small I/O helpers shared by buildctl commands.

/** All of stdin; refuses a terminal so that a forgotten pipe is an error, not a hang. */
export async function readStdin(): Promise<Uint8Array> {
  if (process.stdin.isTTY) throw new Error("expected a definition on stdin (pipe one in, or give a file)");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}
