#!/usr/bin/env bash
# make frontend-images: builds, with buildd, the frontend images shipped in examples/frontends
# (the Dockerfile frontend itself and the steps example) from examples/frontends/image/Dockerfile,
# pushes them to the demo registry, and checks that the Dockerfile frontend image builds through
# gateway.v0. Reuses (or starts) the registry and daemon of `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=$REPO/.state/demo
SOCK=$STATE/buildd.sock
REGISTRY=127.0.0.1:5055
mkdir -p "$STATE"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
source "$REPO/scripts/demo-env.sh"

for name in dockerfile steps; do
  say "building the $name frontend image with buildd"
  bin/buildctl --addr "unix://$SOCK" build --progress=plain --frontend dockerfile.v0 \
    --local context="$REPO" --local dockerfile="$REPO/examples/frontends/image" \
    --opt build-arg:NODE_BASE="$REGISTRY/node:24" --opt build-arg:ENTRY="examples/frontends/$name/main.ts" \
    --output type=image,name="$REGISTRY/buildd/$name:latest",push=true
done

say "checking the Dockerfile frontend image through gateway.v0"
check=$STATE/frontend-check
rm -rf "$check" && mkdir -p "$check"
printf 'FROM %s/busybox:latest\nRUN echo built by the dockerfile frontend image > /proof\n' "$REGISTRY" > "$check/Dockerfile"
bin/buildctl --addr "unix://$SOCK" build --frontend gateway.v0 --opt source="$REGISTRY/buildd/dockerfile:latest" \
  --local context="$check" --local dockerfile="$check" --output type=local,dest="$check/out"
cat "$check/out/proof"
say "images: $REGISTRY/buildd/dockerfile:latest and $REGISTRY/buildd/steps:latest"
