import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { http as llbHttp, loadDefinition } from "../../llb/index.ts";
import { digestOf } from "../../util/digest.ts";
import {
  fileNameFromContentDisposition,
  fileNameFromUrl,
  httpCacheKey,
  httpFileName,
  parseGoInt,
  parseHttpIdentifier,
} from "./identifier.ts";

const sum = digestOf("x");

function sourceOp(url: string, opts: Parameters<typeof llbHttp>[1]) {
  const def = loadDefinition(
    llbHttp(url, opts).marshal({ platform: { os: "linux", architecture: "amd64" } }).bytes,
  );
  for (const d of def.order) {
    const op = def.ops.get(d)!.op.op;
    if (op.case === "source") return op.value;
  }
  throw new Error("no source op");
}

describe("parseHttpIdentifier", () => {
  test("reads what llb.http() writes", () => {
    const op = sourceOp("https://example.com/a/tool.tgz", {
      checksum: sum,
      filename: "t.tgz",
      chmod: 0o755,
      uid: 1,
      gid: 2,
    });
    assert.deepEqual(parseHttpIdentifier(op.identifier, op.attrs), {
      url: "https://example.com/a/tool.tgz",
      checksum: sum,
      filename: "t.tgz",
      perm: 0o755,
      uid: 1,
      gid: 2,
    });
  });

  test("defaults like BuildKit: mode 0600, root, no name of its own", () => {
    assert.deepEqual(parseHttpIdentifier("http://h/f"), { url: "http://h/f", perm: 0o600, uid: 0, gid: 0 });
    assert.equal(parseHttpIdentifier("http://h/f", { "http.perm": "0" }).perm, 0o600);
    assert.equal(parseHttpIdentifier("http://h/f", { "http.perm": "0o644" }).perm, 0o644);
    assert.equal(parseHttpIdentifier("http://h/f", { "http.perm": "493" }).perm, 0o755);
  });

  test("refuses malformed attrs instead of ignoring them", () => {
    assert.throws(() => parseHttpIdentifier("ftp://h/f"), /want an http:\/\/ or https:\/\/ URL/);
    assert.throws(() => parseHttpIdentifier("not a url"), /is not a URL/);
    assert.throws(() => parseHttpIdentifier("http://h/f", { "http.checksum": "md5:abc" }), /only sha256/);
    assert.throws(
      () => parseHttpIdentifier("http://h/f", { "http.checksum": `sha512:${"a".repeat(128)}` }),
      /only sha256/,
    );
    assert.throws(() => parseHttpIdentifier("http://h/f", { "http.filename": "../x" }), /invalid filename/);
    assert.throws(() => parseHttpIdentifier("http://h/f", { "http.filename": ".." }), /invalid filename/);
    assert.throws(
      () => parseHttpIdentifier("http://h/f", { "http.perm": "0800" }),
      /not a non-negative integer/,
    );
    assert.throws(() => parseHttpIdentifier("http://h/f", { "http.perm": "070000" }), /not a file mode/);
    assert.throws(
      () => parseHttpIdentifier("http://h/f", { "http.uid": "-1" }),
      /not a non-negative integer/,
    );
    assert.throws(() => parseHttpIdentifier("http://h/f", { "http.gid": "4294967295" }), /out of range/);
  });

  test("parseGoInt reads Go's base-0 integers", () => {
    const cases: [string, number][] = [
      ["0755", 0o755],
      ["0o17", 0o17],
      ["0x1F", 31],
      ["0b101", 5],
      ["12", 12],
      ["0", 0],
      ["1_000", 1000],
    ];
    for (const [s, n] of cases) assert.equal(parseGoInt(s, "t"), n, s);
    for (const s of ["", "08", "1e3", " 1", "+1"])
      assert.throws(() => parseGoInt(s, "t"), /not a non-negative integer/, s);
  });
});

describe("file names", () => {
  test("the op's name, then Content-Disposition, then the URL, then 'download'", () => {
    assert.equal(httpFileName({ url: "http://h/a/b.tgz", filename: "x" }, { filename: "y" }), "x");
    assert.equal(httpFileName({ url: "http://h/a/b.tgz" }, { filename: "y" }), "y");
    assert.equal(httpFileName({ url: "http://h/a/b.tgz?x=1" }), "b.tgz");
    assert.equal(httpFileName({ url: "http://h/" }), "download");
    assert.equal(httpFileName({ url: "http://h/a/%2e%2e" }), "download");
    assert.equal(fileNameFromUrl("http://h/dir/na%20me/"), "na me");
  });

  test("Content-Disposition: quoted, extended and hostile names", () => {
    assert.equal(fileNameFromContentDisposition('attachment; filename="a \\"b\\".txt"'), 'a "b".txt');
    assert.equal(fileNameFromContentDisposition("attachment; filename=plain.txt"), "plain.txt");
    assert.equal(
      fileNameFromContentDisposition("attachment; filename=\"fallback\"; filename*=UTF-8''na%C3%AFve.txt"),
      "naïve.txt",
    );
    assert.equal(fileNameFromContentDisposition('attachment; filename="/etc/passwd"'), "passwd");
    assert.equal(fileNameFromContentDisposition('attachment; filename="..\\\\..\\\\win.ini"'), "win.ini");
    assert.equal(fileNameFromContentDisposition('attachment; filename=".."'), undefined);
    assert.equal(fileNameFromContentDisposition('attachment; filename="dir/"'), undefined);
    assert.equal(fileNameFromContentDisposition("inline"), undefined);
    assert.equal(fileNameFromContentDisposition(undefined), undefined);
  });
});

test("httpCacheKey is BuildKit's formatCacheKey: the JSON of the file's identity, hashed", () => {
  const key = httpCacheKey({ digest: sum, filename: "f<1>", perm: 0o600, uid: 0, gid: 0 });
  assert.equal(
    key,
    digestOf(`{"Filename":"f\\u003c1\\u003e","Perm":384,"UID":0,"GID":0,"Checksum":"${sum}"}`),
  );
  const withTime = httpCacheKey({
    digest: sum,
    filename: "f",
    perm: 0o600,
    uid: 0,
    gid: 0,
    lastModified: "x",
  });
  assert.equal(
    withTime,
    digestOf(`{"Filename":"f","Perm":384,"UID":0,"GID":0,"Checksum":"${sum}","LastModTime":"x"}`),
  );
  const keys = new Set(
    [
      { filename: "g", perm: 0o600, uid: 0, gid: 0 },
      { filename: "f", perm: 0o644, uid: 0, gid: 0 },
      { filename: "f", perm: 0o600, uid: 1, gid: 0 },
      { filename: "f", perm: 0o600, uid: 0, gid: 1 },
    ].map((k) => httpCacheKey({ digest: sum, ...k })),
  );
  assert.equal(keys.size, 4);
});
