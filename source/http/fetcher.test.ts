import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, type TestContext, test } from "node:test";
import { ContentStore } from "../../content/store.ts";
import { startHttpServer, startSlowServer } from "../../test/http.ts";
import { digestOf } from "../../util/digest.ts";
import { HttpFetcher, type HttpFetcherOptions } from "./fetcher.ts";
import { httpFileName, httpMtime } from "./identifier.ts";

type Env = { dir: string; store: ContentStore; db: DatabaseSync; fetcher: HttpFetcher };

async function setup(t: TestContext, opts: Partial<HttpFetcherOptions> = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-httpsrc-"));
  const db = new DatabaseSync(join(dir, "meta.db"));
  t.after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });
  const store = await ContentStore.open({ root: join(dir, "content"), db });
  return { dir, store, db, fetcher: new HttpFetcher({ store, db, ...opts }) };
}

/** Asserts the store holds no blob and no ingest: a failed download kept nothing. */
async function assertNothingStored(store: ContentStore): Promise<void> {
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await store.listIngests(), []);
}

const body = Buffer.from("the release tarball\n".repeat(100));

describe("HttpFetcher", () => {
  test("downloads into the content store and writes one file with name, mode, owner and mtime", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/dl/tool-1.0.tar.gz": { body } }, { signal: t.signal });
    const url = `${server.url}/dl/tool-1.0.tar.gz`;
    const progress: { current: number; total?: number }[] = [];
    const got = await env.fetcher.fetch(url, { onProgress: (p) => progress.push(p) });
    assert.deepEqual(got, { digest: digestOf(body), size: body.length, cached: false });
    assert.ok(await env.store.has(got.digest));
    assert.deepEqual(progress.at(-1), { current: body.length, total: body.length });

    const out = join(env.dir, "out");
    await mkdir(out);
    const name = httpFileName({ url }, got);
    assert.equal(name, "tool-1.0.tar.gz");
    const mtime = new Date("2020-02-02T02:02:02Z");
    const path = await env.fetcher.writeFile(got.digest, out, {
      filename: name,
      perm: 0o4755,
      uid: 1000,
      gid: 2000,
      mtime,
    });
    assert.equal(path, join(out, name));
    const st = await lstat(path);
    assert.deepEqual(
      [st.mode & 0o7777, st.uid, st.gid, st.mtimeMs, st.size],
      [0o4755, 1000, 2000, mtime.getTime(), body.length],
    );
    assert.deepEqual(await readFile(path), body);
    const plain = await env.fetcher.writeFile(got.digest, out, { filename: "plain" });
    const pst = await lstat(plain);
    assert.deepEqual(
      [pst.mode & 0o7777, pst.uid, pst.gid, pst.mtimeMs],
      [0o600, 0, 0, 0],
      "BuildKit's defaults",
    );
  });

  test("writeFile refuses names that leave the directory and files that exist", async (t) => {
    const env = await setup(t);
    const digest = (await env.store.writeBlob(body)).digest;
    const out = join(env.dir, "out");
    await mkdir(out);
    for (const filename of ["", ".", "..", "../escape", "a/b", "x\0y"]) {
      await assert.rejects(env.fetcher.writeFile(digest, out, { filename }), /unsafe file name/, filename);
    }
    await symlink("/etc/passwd", join(out, "link"));
    await assert.rejects(env.fetcher.writeFile(digest, out, { filename: "link" }), /EEXIST/);
    await symlink("/etc", join(env.dir, "dirlink"));
    await assert.rejects(
      env.fetcher.writeFile(digest, join(env.dir, "dirlink"), { filename: "x" }),
      /not a directory/,
    );
    await assert.rejects(
      env.fetcher.writeFile(digest, out, { filename: "m", perm: 0o10000 }),
      /not a file mode/,
    );
  });

  test("a matching checksum downloads once; afterwards the store answers without network", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body } }, { signal: t.signal });
    const url = `${server.url}/f`;
    const checksum = digestOf(body);
    assert.equal((await env.fetcher.fetch(url, { checksum })).cached, false);
    assert.equal(server.log().length, 1);
    const again = await env.fetcher.fetch(url, { checksum });
    assert.deepEqual(again, { digest: checksum, size: body.length, cached: true });
    assert.equal(server.log().length, 1, "no request at all");
  });

  test("a checksum mismatch is a clear error and keeps nothing, not even the validators", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body, headers: { ETag: '"v1"' } } }, { signal: t.signal });
    const url = `${server.url}/f`;
    const wrong = digestOf("something else");
    await assert.rejects(env.fetcher.fetch(url, { checksum: wrong }), (e: Error & { code?: string }) => {
      assert.equal(e.code, "checksum-mismatch");
      assert.ok(
        e.message.startsWith(`checksum mismatch for ${url}: expected ${wrong}, got ${digestOf(body)}`),
        e.message,
      );
      return true;
    });
    await assertNothingStored(env.store);
    // Nothing was recorded either: the next fetch is a plain GET.
    await env.fetcher.fetch(url);
    assert.equal(server.log()[1]!.headers["if-none-match"], undefined);
  });

  test("an ETag makes the next fetch a conditional GET answered by 304", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body, headers: { ETag: '"v1"' } } }, { signal: t.signal });
    const url = `${server.url}/f`;
    const first = await env.fetcher.fetch(url);
    assert.equal(first.etag, '"v1"');
    const second = await env.fetcher.fetch(url);
    assert.deepEqual(second, { ...first, cached: true });
    const [, conditional] = server.log();
    assert.equal(conditional!.headers["if-none-match"], '"v1"');
    assert.equal(conditional!.status, 304);
    assert.deepEqual(server.stats()["/f"]!.statuses, { 200: 1, 304: 1 });

    // A new version: new ETag, new body, new digest.
    const v2 = Buffer.from("version two\n");
    server.setRoute("/f", { body: v2, headers: { ETag: '"v2"' } });
    const third = await env.fetcher.fetch(url);
    assert.deepEqual(third, { digest: digestOf(v2), size: v2.length, etag: '"v2"', cached: false });
    assert.equal(server.log()[2]!.headers["if-none-match"], '"v1"');
  });

  test("Last-Modified alone also gives 304s, and becomes the file's mtime", async (t) => {
    const env = await setup(t);
    const lastModified = "Wed, 21 Oct 2015 07:28:00 GMT";
    const server = await startHttpServer(
      { "/f": { body, headers: { "Last-Modified": lastModified } } },
      { signal: t.signal },
    );
    const url = `${server.url}/f`;
    const first = await env.fetcher.fetch(url);
    assert.equal(first.lastModified, lastModified);
    const second = await env.fetcher.fetch(url);
    assert.equal(second.cached, true);
    assert.equal(second.digest, first.digest);
    assert.equal(server.log()[1]!.headers["if-modified-since"], lastModified);
    assert.equal(server.log()[1]!.status, 304);
    assert.equal(httpMtime(second.lastModified).toISOString(), "2015-10-21T07:28:00.000Z");
    assert.equal(httpMtime(undefined).getTime(), 0);
  });

  test("a conditional GET is only sent while the stored body still exists", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body, headers: { ETag: '"v1"' } } }, { signal: t.signal });
    const url = `${server.url}/f`;
    const first = await env.fetcher.fetch(url);
    await env.store.delete(first.digest);
    const again = await env.fetcher.fetch(url);
    assert.equal(again.cached, false);
    assert.equal(server.log()[1]!.headers["if-none-match"], undefined);
    assert.ok(await env.store.has(first.digest));
  });

  test("without validators every fetch downloads in full", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body } }, { signal: t.signal });
    const url = `${server.url}/f`;
    assert.equal((await env.fetcher.fetch(url)).cached, false);
    assert.equal((await env.fetcher.fetch(url)).cached, false);
    const log = server.log();
    assert.equal(log.length, 2);
    for (const r of log) {
      assert.equal(r.status, 200);
      assert.equal(r.headers["if-none-match"], undefined);
      assert.equal(r.headers["if-modified-since"], undefined);
      assert.equal(r.bytesOut, body.length);
    }
  });

  test("a truncated body is an error and nothing is stored", async (t) => {
    const env = await setup(t);
    const server = await startSlowServer(body, { truncateAfterBytes: 100 }, { signal: t.signal });
    await assert.rejects(env.fetcher.fetch(server.fileUrl), (e: Error & { code?: string }) => {
      assert.equal(e.code, "truncated");
      assert.match(
        e.message,
        new RegExp(`downloading ${server.fileUrl}: the connection (ended|failed) after`),
      );
      return true;
    });
    await assertNothingStored(env.store);
  });

  test("a silent server times out, and a cancelled download stops at once", async (t) => {
    const env = await setup(t, { idleTimeoutMs: 200 });
    const server = await startSlowServer(body, { stallAfterBytes: 10 }, { signal: t.signal });
    await assert.rejects(env.fetcher.fetch(server.fileUrl), /no data from the server for 200ms/);
    await assertNothingStored(env.store);

    const patient = new HttpFetcher({ store: env.store, db: env.db });
    const controller = new AbortController();
    const pending = patient.fetch(server.fileUrl, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("build cancelled")), 100);
    await assert.rejects(pending, (e: Error & { code?: string }) => e.code === "cancelled");
    await assertNothingStored(env.store);
  });

  test("follows redirects (bounded), and caller headers never cross to another origin", async (t) => {
    const env = await setup(t);
    const other = await startHttpServer({ "/real": { body } }, { signal: t.signal });
    const server = await startHttpServer(
      {
        "/old": { body: "", status: 301, headers: { Location: "/new" } },
        "/new": { body: "", status: 307, headers: { Location: `${other.url}/real` } },
        "/loop": { body: "", status: 302, headers: { Location: "/loop" } },
      },
      { signal: t.signal },
    );
    const got = await env.fetcher.fetch(`${server.url}/old`, { headers: { Authorization: "Bearer secret" } });
    assert.equal(got.digest, digestOf(body));
    assert.equal(server.log()[0]!.headers.authorization, "Bearer secret");
    assert.equal(other.log()[0]!.headers.authorization, undefined);
    await assert.rejects(env.fetcher.fetch(`${server.url}/loop`), /more than 10 redirects/);
  });

  test("an error status is a clear error", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/broken": { body: "oops", status: 500 } }, { signal: t.signal });
    await assert.rejects(env.fetcher.fetch(`${server.url}/missing`), (e: Error & { code?: string }) => {
      assert.equal(e.code, "not-found");
      assert.equal(e.message, `downloading ${server.url}/missing: the server answered 404 Not Found`);
      return true;
    });
    await assert.rejects(env.fetcher.fetch(`${server.url}/broken`), /answered 500 Internal Server Error/);
    await assert.rejects(env.fetcher.fetch("ftp://example.com/f"), /want an http:\/\/ or https:\/\/ URL/);
    await assertNothingStored(env.store);
  });

  test("a body over the size limit is refused, with or without Content-Length", async (t) => {
    const env = await setup(t, { maxBytes: 1000 });
    const server = await startHttpServer(
      async (req, res) => {
        if (req.url === "/chunked") {
          res.writeHead(200);
          for (let i = 0; i < 10; i++) res.write(body.subarray(0, 200));
          res.end();
          return;
        }
        res.writeHead(200, { "content-length": String(body.length) }).end(body);
      },
      { signal: t.signal },
    );
    await assert.rejects(env.fetcher.fetch(`${server.url}/sized`), /over the limit of 1000/);
    await assert.rejects(env.fetcher.fetch(`${server.url}/chunked`), /over the limit of 1000/);
    await assertNothingStored(env.store);
    const small = await env.fetcher.fetch(`${server.url}/sized`, { maxBytes: body.length });
    assert.equal(small.size, body.length);
  });

  test("Content-Disposition names the file unless the op does", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer(
      {
        "/download/123": {
          body,
          headers: { "Content-Disposition": 'attachment; filename="tool.tar.gz"', ETag: '"x"' },
        },
        "/evil": { body, headers: { "Content-Disposition": 'attachment; filename="../../etc/passwd"' } },
      },
      { signal: t.signal },
    );
    const url = `${server.url}/download/123`;
    const got = await env.fetcher.fetch(url);
    assert.equal(got.filename, "tool.tar.gz");
    assert.equal(httpFileName({ url }, got), "tool.tar.gz");
    assert.equal(httpFileName({ url, filename: "mine" }, got), "mine");
    assert.equal(httpFileName({ url }, {}), "123");
    // The 304 path remembers the name.
    assert.equal((await env.fetcher.fetch(url)).filename, "tool.tar.gz");
    // A path in the header is cut to its last component.
    assert.equal((await env.fetcher.fetch(`${server.url}/evil`)).filename, "passwd");
  });

  test("concurrent fetches of one URL run one after the other", async (t) => {
    const env = await setup(t);
    const server = await startHttpServer({ "/f": { body, headers: { ETag: '"v1"' } } }, { signal: t.signal });
    const url = `${server.url}/f`;
    const results = await Promise.all([
      env.fetcher.fetch(url),
      env.fetcher.fetch(url),
      env.fetcher.fetch(url),
    ]);
    assert.deepEqual(
      results.map((r) => r.cached),
      [false, true, true],
    );
    assert.deepEqual(server.stats()["/f"]!.statuses, { 200: 1, 304: 2 });
  });
});
