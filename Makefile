# headroom — run `make help` for the list of targets.

SHELL := /bin/bash
GO ?= go
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
TOOLS := $(shell $(GO) env GOPATH)/headroom-tools
BIN   := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with what they do.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the scaler binary into bin/scaler.
	$(GO) build -trimpath -o $(BIN)/scaler ./cmd/scaler

.PHONY: deps
deps: ## Install what the tests need: Debian packages, pinned Go tools, cached component builds.
	scripts/deps.sh

.PHONY: test
test: deps lint proto-check ## Everything CI runs: deps, lint, generated code, every test against real components (package tests under the race detector).
	HEADROOM_REAL=1 $(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/e2e$$')
	$(MAKE) --no-print-directory e2e-run conformance-run

.PHONY: demo
demo: deps ## Build what is missing, start everything on loopback, play a burst, stop it all (also on Ctrl-C).
	$(GO) run ./internal/cmd/demo

.PHONY: e2e
e2e: deps e2e-run ## End-to-end suite: RabbitMQ -> scaler -> KEDA -> HPA -> scheduler -> KWOK, asserted from the API server.

.PHONY: e2e-run
e2e-run:
	HEADROOM_REAL=1 $(GO) test -count=1 -p 1 -timeout 20m -v ./e2e/

.PHONY: conformance
conformance: deps conformance-run ## Drive scaler serve through KEDA's own client code (separate module conformance/).

.PHONY: conformance-run
conformance-run:
	cd conformance && HEADROOM_REAL=1 $(GO) test -count=1 -timeout 20m ./...

.PHONY: simulate
simulate: ## Replay the default scenario and write tables, timelines and plots to out/simulate.
	$(GO) run ./cmd/scaler simulate --out out/simulate

.PHONY: unit
unit: ## Fast tests only (-short: real-component tests skip).
	$(GO) test -short -count=1 ./...

.PHONY: bench
bench: deps ## Run every benchmark (see docs/benchmarks.md for recorded numbers).
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd conformance && HEADROOM_REAL=1 $(GO) test -run '^$$' -bench . -benchtime 5x -timeout 30m ./...

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (pinned).
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: proto
proto: ## Regenerate proto/*.pb.go with pinned protoc plugins.
	@command -v protoc >/dev/null || { echo "protoc missing: run 'make deps' (Debian package protobuf-compiler)"; exit 1; }
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(TOOLS):$$PATH protoc -I proto --go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative proto/externalscaler.proto

.PHONY: proto-check
proto-check: proto ## Fail if regenerating the proto code changes anything.
	@git diff --exit-code -- proto/ || { echo "proto/: generated code is out of date; run 'make proto' and commit"; exit 1; }
