import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:https";
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from "node:net";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { promisify } from "node:util";
import type { RegistryConfig } from "../../control/config.ts";
import { busyboxImage, pushBusyboxImage } from "../../test/busybox-image.ts";
import { tempDir } from "../../test/process.ts";
import { startRegistry } from "../../test/registry.ts";
import { RegistryClient } from "./client.ts";
import { isRegistryError } from "./errors.ts";

const run = promisify(execFile);

/** A self-signed certificate for 127.0.0.1, made by openssl. */
async function selfSigned(t: TestContext): Promise<{ cert: string; key: string; certPath: string }> {
  const tmp = await tempDir("tls");
  t.after(tmp.cleanup);
  const certPath = join(tmp.dir, "cert.pem");
  const keyPath = join(tmp.dir, "key.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-keyout",
    keyPath,
    "-out",
    certPath,
    "-subj",
    "/CN=buildd test registry",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  return { cert: await readFile(certPath, "utf8"), key: await readFile(keyPath, "utf8"), certPath };
}

/** An https front for a plain-http registry, with the given certificate. */
async function tlsFront(t: TestContext, upstream: URL, tls: { cert: string; key: string }): Promise<string> {
  const server = createServer(tls, (req, res) => {
    const up = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const config = (c: Partial<RegistryConfig>): RegistryConfig => ({
  http: false,
  insecure: false,
  mirrors: [],
  ca: [],
  ...c,
});

test("self-signed registries: refused with a hint by default, accepted with its CA or insecure", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry);
  const tls = await selfSigned(t);
  const host = await tlsFront(t, new URL(registry.url), tls);
  const ref = `${host}/busybox:latest`;
  const want = (await busyboxImage()).digest;

  const plain = new RegistryClient();
  t.after(() => plain.close());
  await assert.rejects(plain.resolve(ref), (e: unknown) => {
    assert.ok(isRegistryError(e, "tls"), String(e));
    assert.match(
      e.message,
      new RegExp(
        `TLS with ${host} failed: .*self-signed.*add its CA .*insecure = true under \\[registry\\."${host}"\\]`,
      ),
    );
    return true;
  });

  for (const hosts of [{ [host]: config({ ca: [tls.certPath] }) }, { [host]: config({ insecure: true }) }]) {
    const c = new RegistryClient({ hosts });
    t.after(() => c.close());
    assert.equal((await c.resolve(ref)).digest, want);
  }
});

/** A TCP relay to `port` that records the first byte of every connection (0x16 opens a TLS handshake). */
async function relay(t: TestContext, port: number): Promise<{ host: string; firstBytes: number[] }> {
  const firstBytes: number[] = [];
  const server = createNetServer((socket) => {
    const upstream = connect(port, "127.0.0.1");
    socket.once("data", (chunk: Buffer) => firstBytes.push(chunk[0]!));
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const sockets = new Set<Socket>();
  server.on("connection", (s) => sockets.add(s));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, firstBytes };
}

test("loopback registries: http = true goes straight to http; unconfigured ones fall back from TLS once", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry);
  const want = (await busyboxImage()).digest;
  const port = Number(new URL(registry.url).port);

  const configured = await relay(t, port);
  const c = new RegistryClient({ hosts: { [configured.host]: config({ http: true }) } });
  t.after(() => c.close());
  assert.equal((await c.resolve(`${configured.host}/busybox`)).digest, want);
  assert.ok(
    configured.firstBytes.length > 0 && !configured.firstBytes.includes(0x16),
    "no TLS handshake was tried",
  );

  const unconfigured = await relay(t, port);
  const d = new RegistryClient();
  t.after(() => d.close());
  assert.equal((await d.resolve(`${unconfigured.host}/busybox`)).digest, want);
  assert.equal((await d.resolve(`${unconfigured.host}/busybox`)).digest, want);
  assert.deepEqual(
    unconfigured.firstBytes.filter((b) => b === 0x16),
    [0x16],
    "one TLS attempt, then the scheme is remembered",
  );
});
