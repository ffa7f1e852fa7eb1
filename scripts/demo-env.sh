#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/frontend-images.sh: makes sure a registry with the base
# images and a buildd (state under .state/demo) are running. Expects REPO, STATE, SOCK, REGISTRY
# and a say() function.
say "building bin/buildd and bin/buildctl"
make -s binaries

if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  say "starting a registry on $REGISTRY (storage in $STATE/registry)"
  cat > "$STATE/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry
http:
  addr: $REGISTRY
YML
  nohup docker-registry serve "$STATE/registry.yml" > "$STATE/registry.log" 2>&1 &
  for _ in $(seq 50); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
fi
say "pushing base images made from this machine's busybox and Node"
bin/node scripts/demo-images.ts "http://$REGISTRY"

if ! bin/buildctl --addr "unix://$SOCK" debug workers >/dev/null 2>&1; then
  say "starting buildd (state in $STATE/root, log in $STATE/buildd.log)"
  printf '[registry."%s"]\nhttp = true\n' "$REGISTRY" > "$STATE/buildd.toml"
  nohup bin/buildd --root "$STATE/root" --addr "unix://$SOCK" --config "$STATE/buildd.toml" > "$STATE/buildd.log" 2>&1 &
  for _ in $(seq 100); do bin/buildctl --addr "unix://$SOCK" debug workers >/dev/null 2>&1 && break; sleep 0.2; done
fi

