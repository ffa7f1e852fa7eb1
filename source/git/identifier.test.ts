import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { git as llbGit, loadDefinition, type State } from "../../llb/index.ts";
import { authConfig, gitEnvironment, redact, secretsOf } from "./command.ts";
import { gitAuthSecretNames, gitCacheKey, parseGitIdentifier, resolveGitAuth } from "./identifier.ts";
import { lsRemotePatterns, pickRemoteRef, splitCredentials } from "./remote.ts";

describe("parseGitIdentifier", () => {
  test("reads what BuildKit's llb.Git writes", () => {
    const id = parseGitIdentifier("git://github.com/moby/buildkit#v0.12.0:frontend/dockerfile", {
      "git.fullurl": "https://github.com/moby/buildkit.git",
      "git.keepgitdir": "true",
      "git.authtokensecret": "GIT_AUTH_TOKEN",
      "git.authheadersecret": "GIT_AUTH_HEADER",
    });
    assert.deepEqual(id, {
      remote: "https://github.com/moby/buildkit.git",
      ref: "v0.12.0",
      subdir: "frontend/dockerfile",
      keepGitDir: true,
      authTokenSecret: "GIT_AUTH_TOKEN",
      authHeaderSecret: "GIT_AUTH_HEADER",
      knownSshHosts: "",
      mountSshSock: "",
    });
  });

  test("without git.fullurl a git:// identifier means https, as in BuildKit", () => {
    const id = parseGitIdentifier("git://127.0.0.1:9418/project#main");
    assert.equal(id.remote, "https://127.0.0.1:9418/project");
    const full = parseGitIdentifier("git://127.0.0.1:9418/project#main", {
      "git.fullurl": "git://127.0.0.1:9418/project",
    });
    assert.equal(full.remote, "git://127.0.0.1:9418/project", "llb.git() writes the git:// URL in full");
    assert.equal(id.ref, "main");
    assert.equal(id.subdir, "");
    assert.equal(id.keepGitDir, false);
    assert.equal(
      parseGitIdentifier("git://git@github.com:org/repo.git").remote,
      "git@github.com:org/repo.git",
    );
    // A scheme-less full URL is https, as in BuildKit.
    assert.equal(parseGitIdentifier("git://h/r", { "git.fullurl": "h/r" }).remote, "https://h/r");
  });

  test("round-trips our own llb.git() for every kind of remote", () => {
    const cases: [string, string, Record<string, unknown>, Partial<ReturnType<typeof parseGitIdentifier>>][] =
      [
        [
          "https://example.com/r.git",
          "main",
          { subdir: "pkg" },
          { remote: "https://example.com/r.git", ref: "main", subdir: "pkg" },
        ],
        [
          "git://127.0.0.1:1234/r",
          "v1",
          { keepGitDir: true },
          { remote: "git://127.0.0.1:1234/r", ref: "v1", keepGitDir: true },
        ],
        [
          "git@github.com:org/private.git",
          "",
          { knownSshHosts: "github.com ssh-ed25519 AAAA\n" },
          {
            remote: "git@github.com:org/private.git",
            ref: "",
            knownSshHosts: "github.com ssh-ed25519 AAAA\n",
            mountSshSock: "default",
          },
        ],
      ];
    for (const [remote, ref, opts, want] of cases) {
      const op = sourceOpOf(llbGit(remote, ref, opts));
      const id = parseGitIdentifier(op.identifier, op.attrs);
      for (const [k, v] of Object.entries(want))
        assert.deepEqual(id[k as keyof typeof id], v, `${remote} ${k}`);
    }
  });

  test("cleans the sub-directory and refuses what could escape or inject", () => {
    assert.equal(parseGitIdentifier("git://h/r#main:/a//b/./").subdir, "a/b");
    assert.equal(parseGitIdentifier("git://h/r#main:/").subdir, "");
    assert.equal(parseGitIdentifier("git://h/r#:sub").ref, "");
    assert.throws(() => parseGitIdentifier("git://h/r#main:a/../../etc"), /must stay inside the repository/);
    assert.throws(() => parseGitIdentifier("git://h/r#-u=evil"), /invalid git ref/);
    assert.throws(() => parseGitIdentifier("git://h/r#a..b"), /invalid git ref/);
    assert.throws(() => parseGitIdentifier("git://h/r#a b"), /invalid git ref/);
    assert.throws(() => parseGitIdentifier("https://h/r"), /want git:\/\/HOST\/PATH/);
    assert.throws(() => parseGitIdentifier("git://"), /remote is empty/);
    assert.throws(
      () => parseGitIdentifier("git://h/r", { "git.fullurl": "file:///etc/repo" }),
      /invalid git remote/,
    );
    assert.throws(
      () => parseGitIdentifier("git://h/r", { "git.fullurl": "ext::sh -c evil" }),
      /invalid git remote/,
    );
    assert.throws(
      () => parseGitIdentifier("git://h/r", { "git.fullurl": "-oProxyCommand=evil" }),
      /invalid git remote/,
    );
    assert.throws(() => parseGitIdentifier("git://h/r", { "git.fullurl": "https://" }), /invalid git remote/);
    // A commit id is a ref like any other.
    const commit = "0123456789abcdef0123456789abcdef01234567";
    assert.equal(parseGitIdentifier(`git://h/r#${commit}`).ref, commit);
  });
});

/** The source op of a one-op state. */
function sourceOpOf(s: State): { identifier: string; attrs: Record<string, string> } {
  const def = loadDefinition(s.marshal({ platform: { os: "linux", architecture: "amd64" } }).bytes);
  for (const d of def.order) {
    const op = def.ops.get(d)!.op.op;
    if (op.case === "source") return { identifier: op.value.identifier, attrs: op.value.attrs };
  }
  throw new Error("no source op");
}

describe("credentials", () => {
  test("secrets are tried host-specific first, header before token, as in BuildKit", async () => {
    const id = parseGitIdentifier("git://github.com/o/r", {
      "git.fullurl": "https://github.com/o/r.git",
      "git.authtokensecret": "GIT_AUTH_TOKEN",
      "git.authheadersecret": "GIT_AUTH_HEADER",
    });
    assert.deepEqual(
      gitAuthSecretNames(id).map((s) => s.name),
      ["GIT_AUTH_HEADER.github.com", "GIT_AUTH_TOKEN.github.com", "GIT_AUTH_HEADER", "GIT_AUTH_TOKEN"],
    );
    const secrets: Record<string, string> = {
      GIT_AUTH_TOKEN: "tok\n",
      "GIT_AUTH_TOKEN.github.com": "host-tok",
    };
    const get = async (name: string) => (name in secrets ? Buffer.from(secrets[name]!) : undefined);
    assert.deepEqual(await resolveGitAuth(id, get), { token: "host-tok" });
    delete secrets["GIT_AUTH_TOKEN.github.com"];
    assert.deepEqual(await resolveGitAuth(id, get), { token: "tok" });
    assert.equal(await resolveGitAuth({ ...id, authTokenSecret: "", authHeaderSecret: "" }, get), undefined);
  });

  test("auth travels as a URL-scoped header in GIT_CONFIG_* variables", () => {
    const remote = "https://git.example.com/org/repo.git";
    const [[key, value]] = authConfig(remote, { token: "T0K" }) as [[string, string]];
    assert.equal(key, `http.${remote}.extraHeader`);
    assert.equal(value, `Authorization: Basic ${Buffer.from("x-access-token:T0K").toString("base64")}`);
    assert.deepEqual(authConfig(remote, { token: "T0K", header: "Bearer X" }), [
      [`http.${remote}.extraHeader`, "Authorization: Bearer X"],
    ]);
    assert.equal(
      authConfig("https://github.com/o/r", { token: "t" })[0]![0],
      "http.https://github.com/.extraHeader",
    );
    assert.deepEqual(authConfig("git://h/r", { token: "t" }), [], "no header for the git protocol");
    assert.throws(() => authConfig(remote, { header: "a\r\nX-Evil: 1" }), /line break/);

    const env = gitEnvironment(authConfig(remote, { token: "T0K" }), { authSock: "/run/agent.sock" });
    assert.equal(env["HOME"], "/dev/null");
    assert.equal(env["GIT_CONFIG_NOSYSTEM"], "1");
    assert.equal(env["GIT_TERMINAL_PROMPT"], "0");
    assert.equal(env["GIT_CONFIG_COUNT"], "1");
    assert.equal(env["GIT_CONFIG_KEY_0"], `http.${remote}.extraHeader`);
    assert.equal(env["SSH_AUTH_SOCK"], "/run/agent.sock");
    assert.match(env["GIT_SSH_COMMAND"]!, /StrictHostKeyChecking=no/);
    assert.equal(env["GIT_DIR"], undefined, "nothing is inherited from the daemon's environment");
    const checked = gitEnvironment([], { knownHostsFile: "/tmp/x/known_hosts" });
    assert.match(
      checked["GIT_SSH_COMMAND"]!,
      /StrictHostKeyChecking=yes -o UserKnownHostsFile=\/tmp\/x\/known_hosts$/,
    );
  });

  test("URL credentials are split off and every form of a secret is redacted", () => {
    assert.deepEqual(splitCredentials("https://bob:p%40ss@h/r"), {
      url: "https://h/r",
      credentials: "bob:p@ss",
    });
    assert.deepEqual(splitCredentials("https://h/r"), { url: "https://h/r" });
    assert.deepEqual(splitCredentials("ssh://git@h/r"), { url: "ssh://git@h/r" });
    const secrets = secretsOf({ token: "T0K3N" }, "bob:hunter22");
    const b64 = Buffer.from("x-access-token:T0K3N").toString("base64");
    assert.equal(redact(`a T0K3N b ${b64} c hunter22 d`, secrets), "a xxxxx b xxxxx c xxxxx d");
  });
});

describe("ls-remote", () => {
  const out = [
    "ref: refs/heads/main\tHEAD",
    `${"a".repeat(40)}\tHEAD`,
    `${"a".repeat(40)}\trefs/heads/main`,
    `${"b".repeat(40)}\trefs/heads/v1`,
    `${"c".repeat(40)}\trefs/tags/v1`,
    `${"d".repeat(40)}\trefs/tags/v2`,
    `${"e".repeat(40)}\trefs/tags/v2^{}`,
  ].join("\n");

  test("branches win over tags, annotated tags are peeled, HEAD names its branch", () => {
    assert.deepEqual(pickRemoteRef("v1", out), {
      name: "refs/heads/v1",
      object: "b".repeat(40),
      commit: "b".repeat(40),
    });
    assert.deepEqual(pickRemoteRef("refs/tags/v1", out)?.commit, "c".repeat(40));
    assert.deepEqual(pickRemoteRef("v2", out), {
      name: "refs/tags/v2",
      object: "d".repeat(40),
      commit: "e".repeat(40),
    });
    assert.deepEqual(pickRemoteRef("", out), {
      name: "refs/heads/main",
      object: "a".repeat(40),
      commit: "a".repeat(40),
    });
    assert.equal(pickRemoteRef("v3", out), undefined);
    assert.deepEqual(lsRemotePatterns("v2").patterns, ["refs/heads/v2", "refs/tags/v2", "refs/tags/v2^{}"]);
    assert.deepEqual(lsRemotePatterns(""), { symref: true, patterns: ["HEAD"] });
  });
});

test("gitCacheKey follows BuildKit's COMMIT[.git][:SUBDIR]", () => {
  const commit = "0123456789abcdef0123456789abcdef01234567";
  const keys = new Set([
    gitCacheKey({ commit, keepGitDir: false, subdir: "" }),
    gitCacheKey({ commit, keepGitDir: true, subdir: "" }),
    gitCacheKey({ commit, keepGitDir: false, subdir: "a" }),
    gitCacheKey({ commit, keepGitDir: true, subdir: "a" }),
  ]);
  assert.equal(keys.size, 4);
});
