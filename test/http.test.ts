import assert from "node:assert/strict";
import { test } from "node:test";
import { startHttpServer, startSlowServer } from "./http.ts";

test("routes answer 304 to matching If-None-Match and If-Modified-Since, and count requests", async (t) => {
  const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
  const server = await startHttpServer({
    "/etag": { body: "v1", headers: { ETag: '"abc"' } },
    "/dated": { body: "dated", headers: { "Last-Modified": lastModified } },
    "/plain": { body: "plain" },
  });
  t.after(server.stop);

  const first = await fetch(`${server.url}/etag`);
  assert.equal(first.status, 200);
  assert.equal(await first.text(), "v1");
  assert.equal((await fetch(`${server.url}/etag`, { headers: { "if-none-match": '"abc"' } })).status, 304);
  assert.equal((await fetch(`${server.url}/etag`, { headers: { "if-none-match": '"old"' } })).status, 200);

  const since = (d: string) => ({ headers: { "if-modified-since": d } });
  assert.equal((await fetch(`${server.url}/dated`, since(lastModified))).status, 304);
  assert.equal((await fetch(`${server.url}/dated`, since("Tue, 20 Oct 2015 07:28:00 GMT"))).status, 200);
  // Without a validator on the route, conditional requests get the full body.
  assert.equal((await fetch(`${server.url}/plain`, { headers: { "if-none-match": "*" } })).status, 200);

  server.setRoute("/etag", { body: "v2", headers: { ETag: '"def"' } });
  const changed = await fetch(`${server.url}/etag`, { headers: { "if-none-match": '"abc"' } });
  assert.equal(await changed.text(), "v2");
  assert.equal((await fetch(`${server.url}/missing`)).status, 404);

  const stats = server.stats();
  assert.equal(stats["/etag"]?.requests, 4);
  assert.deepEqual(stats["/etag"]?.statuses, { 200: 3, 304: 1 });
  assert.equal(stats["/dated"]?.methods.GET, 2);
  assert.equal(server.log().find((r) => r.status === 304)?.headers["if-none-match"], '"abc"');
});

test("a handler server serves what the handler writes", async (t) => {
  const server = await startHttpServer((req, res) => {
    res.writeHead(201, { "x-method": req.method ?? "" }).end("made");
  });
  t.after(server.stop);
  const res = await fetch(`${server.url}/anything`, { method: "POST", body: "12345" });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("x-method"), "POST");
  assert.equal(await res.text(), "made");
  assert.equal(server.stats()["/anything"]?.bytesIn, 5);
  assert.equal(server.stats()["/anything"]?.bytesOut, 4);
});

test("a truncating server cuts the body short", async (t) => {
  const server = await startSlowServer("0123456789", { truncateAfterBytes: 4 });
  t.after(server.stop);
  const res = await fetch(server.fileUrl);
  assert.equal(res.headers.get("content-length"), "10");
  await assert.rejects(res.text());
});

test("a stalling server sends part of the body and then nothing", async (t) => {
  const server = await startSlowServer(Buffer.alloc(1000, "x"), { stallAfterBytes: 100 });
  t.after(server.stop);
  const res = await fetch(server.fileUrl);
  const reader = res.body!.getReader();
  let received = 0;
  while (received < 100) {
    const { value, done } = await reader.read();
    assert.equal(done, false);
    received += value!.length;
  }
  // Only closing the server ends the response, and then as an error, not as a complete body.
  await server.stop();
  await assert.rejects(reader.read());
  assert.equal(received, 100);
});
