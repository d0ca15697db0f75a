# holdfast: build, test, demo. Targets that load BPF or run containers need root.

SHELL := /bin/bash
GO ?= go
# Go's standard install location, for shells that lack it in PATH.
export PATH := $(PATH):/usr/local/go/bin
BIN := bin

# Commands and the binaries they build. A command is built only once its
# package exists, so `make build` works while components are still landing.
COMMANDS := engine/cmd/holdfast hook/cmd/holdfast-oci-hook nri-plugin/cmd/holdfast-nri
BINARIES := $(foreach cmd,$(COMMANDS),$(if $(wildcard $(cmd)/*.go),$(BIN)/$(notdir $(cmd))))

# Two cores: two test binaries at a time. The timeout bounds one package, so a
# hung test fails the run well inside CI's budget.
TEST_FLAGS ?= -count=1 -p 2 -timeout 10m
BENCH_FLAGS ?=

# The image tag follows the engine's version.
VERSION ?= $(shell sed -n 's/^var Version = "\(.*\)"$$/\1/p' engine/daemon/engine.go)
IMAGE ?= holdfast:$(VERSION)
HELM_BIN ?= /var/cache/holdfast/helm-v3.22.0/bin

.PHONY: all build generate check-generated deps test demo bench clean image manifest check-manifest check-fmt FORCE

all: build

build: $(BINARIES)

# Always hand the build to go: its cache decides what is stale. Static
# binaries (no cgo) start faster, which the hook pays on every container.
$(BIN)/%: FORCE
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./$(filter %/$*,$(COMMANDS))

# Static binaries FROM scratch: nothing is pulled from a registry.
image: build
	podman build -f deploy/Containerfile -t $(IMAGE) $(BIN)

# deploy/kubernetes/daemonset.yaml is the chart rendered with its defaults.
manifest:
	bash test/scripts/build-helm.sh $(HELM_BIN)
	bash deploy/render-manifest.sh $(HELM_BIN)/helm > deploy/kubernetes/daemonset.yaml

# Fails when deploy/kubernetes/daemonset.yaml is not what the chart renders.
check-manifest:
	bash test/scripts/build-helm.sh $(HELM_BIN)
	@bash deploy/render-manifest.sh $(HELM_BIN)/helm | diff -u deploy/kubernetes/daemonset.yaml - \
		|| { echo "check-manifest: deploy/kubernetes/daemonset.yaml differs from the chart; run make manifest"; exit 1; }
	@echo "check-manifest: deploy/kubernetes/daemonset.yaml matches the chart"

generate:
	$(GO) generate ./bpf/

# Fails if regenerating changes anything under bpf/: a stale or uncommitted
# generated file. In a clean checkout (CI) this is `git diff --exit-code --
# bpf/` that also catches generated files never committed; comparing
# checksums keeps the check meaningful while bpf/ has uncommitted edits.
check-generated:
	@sums() { git ls-files --cached --others --exclude-standard -z -- bpf/ | xargs -0 -r sha256sum 2>&1; }; \
	before=$$(sums); \
	$(GO) generate ./bpf/ || exit 1; \
	if [ "$$before" != "$$(sums)" ]; then \
		echo "check-generated: go generate ./bpf/ changed bpf/; commit the regenerated files:"; \
		git status --short -- bpf/; \
		exit 1; \
	fi; \
	echo "check-generated: bpf/ generated files are up to date"

deps:
	bash test/scripts/install-deps.sh
	@if [ -f test/scripts/build-containerd.sh ]; then bash test/scripts/build-containerd.sh; fi
	bash test/scripts/build-helm.sh $(HELM_BIN)

check-fmt:
	@files=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$files" ]; then echo "check-fmt: not gofmt-formatted: $$files"; exit 1; fi; \
	echo "check-fmt: Go files are gofmt-formatted"

test: deps build check-fmt check-generated check-manifest
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

demo: deps build
	bash test/demo.sh

bench: deps
	$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./bpf/ ./engine/registry/ ./bpf/cgroup/ ./engine/api/ocihook/ ./nri-plugin/ ./test/...

clean:
	rm -rf $(BIN)

FORCE:
