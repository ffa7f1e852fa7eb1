#!/usr/bin/env bash
# make demo: on a fresh Debian machine, as root. Installs what is missing, starts a local registry
# with base images made from this machine (no internet needed), starts buildd with its state under
# the repo unless one is already running there, and builds buildd itself with the self-build
# example; the result lands in .state/demo/out.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=$REPO/.state/demo
SOCK=$STATE/buildd.sock
REGISTRY=127.0.0.1:5055
mkdir -p "$STATE"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then echo "make demo: run as root (buildd runs containers with runc)" >&2; exit 1; fi
missing=()
for p in runc busybox-static docker-registry; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

source "$REPO/scripts/demo-env.sh"

say "building buildd with buildd (examples/buildd3.ts, offline mode)"
rm -rf "$STATE/out"
bin/node examples/buildd3.ts --buildd=local --node=base --deps=local --base="$REGISTRY/node:24" |
  bin/buildctl --addr "unix://$SOCK" build --local buildd-src="$REPO" --output type=local,dest="$STATE/out"

say "result: $STATE/out"
echo "    the bundles are in $STATE/out/opt/buildd (buildctl/, buildd/), wrappers in $STATE/out/usr/local/bin"
echo "    it runs: $(bin/node "$STATE/out/opt/buildd/buildctl/main.mjs" --version)"
echo "    the daemon keeps running: bin/buildctl --addr unix://$SOCK du"
