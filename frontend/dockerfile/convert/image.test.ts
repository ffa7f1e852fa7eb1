// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// The image config and history a Dockerfile produces, for every metadata instruction.
import assert from "node:assert/strict";
import { test } from "node:test";
import { goDuration, goQuote, parseGoDuration } from "../gofmt.ts";
import { imageToJSON } from "./image.ts";
import { baseConfig, convert, fakeRegistry, fileOf } from "./testing.ts";

const EVERYTHING = `FROM busybox
MAINTAINER Jane <jane@example.com>
LABEL org.opencontainers.image.title="My app" version=1.0
ENV APP_HOME=/app PORT=8080
ARG BUILD=dev
WORKDIR $APP_HOME
WORKDIR sub
USER app:staff
EXPOSE $PORT 53/udp 9000-9001
VOLUME /data ["/logs"]
VOLUME ["/cache", "/tmp/x"]
STOPSIGNAL SIGTERM
SHELL ["/bin/ash", "-c"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 CMD wget -q -O- http://localhost:$PORT/ || exit 1
ONBUILD RUN echo building on top
ENTRYPOINT ["/app/run"]
CMD serve --port=$PORT
`;

test("image config for a Dockerfile with every metadata instruction", async () => {
  const r = await convert(EVERYTHING);
  assert.deepEqual(imageToJSON(r.image), {
    architecture: "amd64",
    author: "Jane <jane@example.com>",
    config: {
      User: "app:staff",
      ExposedPorts: { "8080/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {} },
      Env: [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "APP_HOME=/app",
        "PORT=8080",
      ],
      Entrypoint: ["/app/run"],
      Cmd: ["/bin/ash", "-c", "serve --port=$PORT"],
      Volumes: { "/data": {}, "[/logs]": {}, "/cache": {}, "/tmp/x": {} },
      WorkingDir: "/app/sub",
      Labels: { "org.opencontainers.image.title": "My app", version: "1.0" },
      StopSignal: "SIGTERM",
      ArgsEscaped: true,
      Healthcheck: {
        Test: ["CMD-SHELL", "wget -q -O- http://localhost:$PORT/ || exit 1"],
        Interval: 30e9,
        Timeout: 3e9,
        StartPeriod: 60e9,
        StartInterval: 2e9,
        Retries: 3,
      },
      OnBuild: ["RUN echo building on top"],
      Shell: ["/bin/ash", "-c"],
    },
    os: "linux",
    rootfs: { type: "layers", diff_ids: [] },
    history: r.history,
  });
  assert.deepEqual(
    r.history.map((h) => [h.created_by, h.empty_layer ?? false]),
    [
      ["MAINTAINER Jane <jane@example.com>", true],
      ["LABEL org.opencontainers.image.title=My app version=1.0", true],
      ["ENV APP_HOME=/app PORT=8080", true],
      ["ARG BUILD=dev", true],
      ["WORKDIR /app", false],
      ["WORKDIR /app/sub", false],
      ["USER app:staff", true],
      ["EXPOSE map[53/udp:{} 8080/tcp:{} 9000/tcp:{} 9001/tcp:{}]", true],
      // Not JSON, so words; expansion then removes the quotes.
      ["VOLUME [/data [/logs]]", true],
      ["VOLUME [/cache /tmp/x]", true],
      ["STOPSIGNAL SIGTERM", true],
      ["SHELL [/bin/ash -c]", true],
      [
        'HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost:$PORT/ || exit 1"] "30s" "3s" "1m0s" "2s" \'\\x03\'}',
        true,
      ],
      ['ENTRYPOINT ["/app/run"]', true],
      ['CMD ["/bin/ash" "-c" "serve --port=$PORT"]', true],
    ],
  );
  assert.ok(r.history.every((h) => h.comment === "buildkit.dockerfile.v0" && h.created === undefined));
  const json = JSON.stringify(imageToJSON(r.image));
  assert.ok(json.indexOf('"53/udp"') < json.indexOf('"8080/tcp"'), "map keys are sorted as Go writes them");
  // WORKDIR creates the directory, owned by the USER in effect (none yet here).
  const mk = fileOf(r.named("[2/3] WORKDIR /app"))[0]!.action;
  assert.ok(mk.case === "mkdir" && mk.value.path === "/app" && mk.value.makeParents);
  assert.deepEqual(
    r.warnings.map((w) => w.rule),
    ["MaintainerDeprecated"],
  );
});

test("ENTRYPOINT resets an inherited CMD but not one set in the same stage", async () => {
  const reg = fakeRegistry({
    "docker.io/library/base:latest": { config: baseConfig({ Cmd: ["base-cmd"] }) },
  });
  const reset = await convert('FROM base\nENTRYPOINT ["/e"]\n', { resolveImageConfig: reg.resolve });
  assert.equal(reset.image.config.Cmd, undefined);
  const kept = await convert('FROM base\nCMD ["mine"]\nENTRYPOINT ["/e"]\n', {
    resolveImageConfig: reg.resolve,
  });
  assert.deepEqual(kept.image.config.Cmd, ["mine"]);
  const shell = await convert("FROM base\nENTRYPOINT exec /e\n", { resolveImageConfig: reg.resolve });
  assert.deepEqual(shell.image.config.Entrypoint, ["/bin/sh", "-c", "exec /e"]);
  assert.deepEqual(
    shell.warnings.map((w) => w.message),
    ["JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals"],
  );
});

test("labels from the build options, SOURCE_DATE_EPOCH, HEALTHCHECK NONE, USER from the base", async () => {
  const reg = fakeRegistry({
    "docker.io/library/base:latest": { config: baseConfig({ User: "nobody", WorkingDir: "/srv" }) },
  });
  const r = await convert("FROM base\nHEALTHCHECK NONE\nWORKDIR data\n", {
    resolveImageConfig: reg.resolve,
    labels: { "com.example.vcs-ref": "abc123" },
    buildArgs: { SOURCE_DATE_EPOCH: "1700000000" },
  });
  assert.deepEqual(r.image.config.Labels, { "com.example.vcs-ref": "abc123" });
  assert.equal(r.image.created, "2023-11-14T22:13:20Z");
  assert.ok(r.history.slice(1).every((h) => h.created === "2023-11-14T22:13:20Z"));
  assert.equal(r.history[1]!.created_by, 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}');
  assert.deepEqual(r.image.config.Healthcheck?.test, ["NONE"]);
  const mk = fileOf(r.named(/WORKDIR data/))[0]!.action;
  assert.ok(mk.case === "mkdir" && mk.value.path === "/srv/data");
  assert.equal(
    mk.case === "mkdir" &&
      mk.value.owner?.user?.user.case === "byName" &&
      mk.value.owner.user.user.value.name,
    "nobody",
  );
  const explicit = await convert("FROM busybox\n", { sourceDateEpoch: 0 });
  assert.equal(explicit.image.created, "1970-01-01T00:00:00Z");
});

test("metadata errors point at their line", async () => {
  await assert.rejects(convert("FROM busybox\nEXPOSE 80/xyz\n"), /Dockerfile:2: invalid proto: xyz/);
  await assert.rejects(convert("FROM busybox\nEXPOSE 99999\n"), /Dockerfile:2: invalid containerPort: 99999/);
  await assert.rejects(
    convert("FROM busybox\nSTOPSIGNAL SIGNOPE\n"),
    /Dockerfile:2: Invalid signal: SIGNOPE/,
  );
  await assert.rejects(
    convert('FROM busybox\nENV A="${B:?must be set}"\n'),
    /Dockerfile:2: failed to process "\\"\$\{B:\?must be set\}\\"": B: must be set/,
  );
  const ok = await convert("FROM busybox\nSTOPSIGNAL 9\nSTOPSIGNAL rtmin+3\n");
  assert.equal(ok.image.config.StopSignal, "rtmin+3");
});

test("Go formats used in history: durations and quoting", () => {
  assert.equal(goDuration(0n), "0s");
  assert.equal(goDuration(1_500_000_000n), "1.5s");
  assert.equal(goDuration(90n * 60n * 1_000_000_000n), "1h30m0s");
  assert.equal(goDuration(250_000n), "250µs");
  assert.equal(goDuration(1_000_000n), "1ms");
  assert.equal(parseGoDuration("1h2m3.5s"), 3_723_500_000_000n);
  assert.equal(parseGoDuration("300ms"), 300_000_000n);
  assert.throws(() => parseGoDuration("3"), /missing unit|invalid duration/);
  assert.equal(goQuote('a"b\\c\n\t\u0001é'), '"a\\"b\\\\c\\n\\t\\x01é"');
});
