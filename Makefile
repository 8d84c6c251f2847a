# controlplane: the two commands a newcomer needs are `make run` and `make test`.
GO ?= go
CONFIG_DIR ?= examples/library
DATA_DIR ?= ./data
TOOLS_ENV := .cache-tools.env

.PHONY: run build test unit tools testdata bench bench-istiod bench-l soak fuzz image vet

## run: serve the example mesh from the YAML directory, CA state in ./data; the status page is on 15014
run:
	@echo "status page: http://127.0.0.1:15014/ (once the example mesh is loaded)"
	$(GO) run ./cmd/controlplane serve --config-dir $(CONFIG_DIR) --data-dir $(DATA_DIR)

build:
	$(GO) build -o bin/controlplane ./cmd/controlplane

## tools: build kube-apiserver, etcd, grpcurl and pilot-agent once into ~/.cache/controlplane
tools:
	./hack/install-tools.sh > $(TOOLS_ENV)

## test: everything, against the real components built by `make tools`
test: tools vet
	. ./$(TOOLS_ENV) && $(GO) test -count=1 -timeout 30m ./...

## unit: the tests that need no external binaries are the same tests; this just skips the tool build
unit:
	$(GO) test ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

## testdata: rewrite the golden files after reviewing the change
testdata:
	$(GO) test ./snapshot/... -update

## bench: the push-path benchmark (issue 20's S of HTTP ServiceEntries with the bytes floor, scenario S, then S with every proxy scoped by a Sidecar to 10 services), cold start at S (YAML folder, kube-apiserver) and the CA benchmark
bench: tools
	$(GO) run ./cmd/loadtest -scenario http -out bench-results-http.json
	$(GO) run ./cmd/loadtest -scenario full -out bench-results.json
	$(GO) run ./cmd/loadtest -scenario scoped -baseline=false -out bench-results-scoped.json
	. ./$(TOOLS_ENV) && $(GO) run ./cmd/loadtest -cold-start -out bench-results-coldstart.json
	$(GO) test -run '^$$' -bench . ./certauthority/

## bench-istiod: istiod as a peer (builds pilot-discovery once, ~3.5 min): issue 20's HTTP ServiceEntries at BENCH_ISTIOD_PROXIES x BENCH_ISTIOD_SERVICES through a real kube-apiserver, servers pinned to CPU 0, the load client to CPU 1
BENCH_ISTIOD_PROXIES ?= 300
BENCH_ISTIOD_SERVICES ?= 200
bench-istiod:
	./hack/install-tools.sh --istiod > $(TOOLS_ENV)
	. ./$(TOOLS_ENV) && $(GO) run ./cmd/loadtest -scenario http -proxies $(BENCH_ISTIOD_PROXIES) -services $(BENCH_ISTIOD_SERVICES) \
		-istiod-bin "$$CONTROLPLANE_TOOLS_BIN/pilot-discovery" -istiod-crds "$$CONTROLPLANE_TOOLS_BIN/istio-crds.yaml" -out bench-results-istiod.json

## bench-l: scenario L (10,000 services, 2,000 proxies; our server only): RSS and convergence at scale
bench-l:
	$(GO) run ./cmd/loadtest -scenario l -baseline=false -floor=false -timeout 10m -out bench-results-l.json

## soak: scenario S, then SOAK_DURATION of 10 changes/s while 5% of the proxies churn, some NACK and a few read slowly (fails on a dropped stream or an unconverged change)
SOAK_DURATION ?= 5m
soak:
	$(GO) run ./cmd/loadtest -soak -duration $(SOAK_DURATION) -out soak-results.json

## fuzz: every Go fuzz target (found by itself) for FUZZTIME each, one after another; their seeds already run in `make test`
FUZZTIME ?= 1m
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./hack/fuzz.sh

image:
	docker build -t controlplane:dev .
