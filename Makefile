# containerd-shim-boxlite-v2 — build, test, provision.
#
#   make                       build with the lean kernel embedded
#   make KERNELS=net           embed net only;  make KERNELS="lean net"  both
#   make KERNELS=              embed nothing (kernels come from [kernel.paths])
#   make generate              regenerate the agent API from runtime/agent/api/agent.proto
#   make deps                  provision kernels, containerd, ctr, crictl, CNI (cached)
#   make test                  deps + build + the whole test suite
#   make fuzz                  run each fuzz target for FUZZTIME inputs (default 100000x; make test does)
#   make critest               the CRI validation suite (critest v1.37.0) on runc and on boxlite, compared (root)
#   make bench                 boxlite vs runc on a private containerd: table + bin/bench.json (root)
#   make demo                  a private containerd running containers through the shim
#   make demo-dind             docker-in-docker in a boxlite-net CRI pod (and refused on lean): test/dind, verbose
#   make release               dist/boxlite-shim-VERSION-linux-amd64.tar.gz (+ .sha256): see deploy/release

SHELL         := /bin/bash
# Go 1.27.3 (go.mod says 1.27): the go command fetches that toolchain from
# the module proxy on first use. 1.26.8, the machine's own, carries known
# advisories (net/http, crypto/tls, crypto/x509: make vulncheck).
export GOTOOLCHAIN ?= go1.27.3
GO            ?= go
BOXLITE_DEPS  ?= /var/cache/boxlite-deps
export BOXLITE_DEPS
KERNELS       ?= lean
TAGS          := $(strip $(foreach k,$(KERNELS),kernel_$(k)))
BIN           := bin
VERSION       ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
REVISION      ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PKG           := github.com/boxlite/boxlite-shim
LDFLAGS       := -X $(PKG)/runtime/version.Version=$(VERSION) -X $(PKG)/runtime/version.Revision=$(REVISION)
BLOBS         := $(foreach k,$(KERNELS),kernel/blobs/$(k)/libkrunfw.so.5.zst)

.PHONY: all build shim vmm agent generate fuzz bench critest critest-run deps test unit e2e vet vulncheck fmt demo demo-dind release clean blobs testbins FORCE

all: build

build: shim vmm agent

shim: $(BLOBS)
	CGO_ENABLED=0 $(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/containerd-shim-boxlite-v2 ./cmd/containerd-shim-boxlite-v2

vmm:
	CGO_ENABLED=1 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/boxlite-vmm ./cmd/boxlite-vmm

# The guest agent is static: it runs as the guest's init, and on the host under the test double.
agent:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/boxlite-agent ./cmd/boxlite-agent

# Regenerates runtime/agent/api from agent.proto (needs protoc: Debian's protobuf-compiler).
generate:
	runtime/agent/api/generate.sh

# An embedded kernel comes from the deps cache, compressed and checksummed.
kernel/blobs/%/libkrunfw.so.5.zst: $(BOXLITE_DEPS)/kernels/%/libkrunfw.so.5
	$(GO) run ./kernel/pack -src $< -out kernel/blobs/$*

$(BOXLITE_DEPS)/kernels/%/libkrunfw.so.5:
	@echo "kernel variant '$*' is not in $(BOXLITE_DEPS)/kernels/$*: run 'make deps' first, or build with KERNELS= and set [kernel.paths] in the config" >&2; exit 1

blobs: $(BLOBS)

deps:
	deploy/deps/deps.sh all

# The libkrun test double, the emulated engine (libkrun.so.1, its boot stub and
# init, and the deps cache's vhost-device-vsock, in $(BIN)/test/libkrun-qemu)
# and the test workload (DESIGN.md: testing where no guest can boot).
testbins:
	mkdir -p $(BIN)/test
	cc -O2 -Wall -shared -fPIC -Wl,-soname,libkrun.so.1 -o $(BIN)/test/libkrun.so.1 test/libkrun-double/libkrun_double.c -ldl -pthread
	test/libkrun-qemu/build.sh $(BIN)/test/libkrun-qemu
	CGO_ENABLED=0 $(GO) build -o $(BIN)/test/vmmworkload ./test/vmmworkload

vet:
	$(GO) vet ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$bad" || { echo "gofmt: $$bad" >&2; exit 1; }

# govulncheck against the Go vulnerability database make deps copied into the
# cache (the public service is not reachable from here).
vulncheck:
	$(BOXLITE_DEPS)/bin/govulncheck -db file://$(BOXLITE_DEPS)/vulndb/osv ./...

test: deps
	$(MAKE) KERNELS="lean net" build testbins vet vulncheck
	@# -v so that every skip's reason can be printed; the whole log stays in $(BIN)/test.log.
	@# -p 1: suites that start containerd check the whole host for leftovers of ours.
	@set -o pipefail; BOXLITE_REQUIRE_BLOBS=1 $(GO) test -p 1 -count=1 -v ./... 2>&1 | tee $(BIN)/test.log \
		| grep -E -B1 --line-buffered '^(ok|FAIL|panic:)|^ *--- FAIL' | grep -v -e '^--$$' -e '^=== ' -e '^PASS$$' \
		|| { echo "make test: tests failed; the full log is $(BIN)/test.log" >&2; exit 1; }
	@awk -f test/skips.awk $(BIN)/test.log
	$(GO) test -count=1 -tags 'kernel_lean kernel_net' ./kernel/...
	$(MAKE) critest-run
	$(MAKE) fuzz

# critest (cri-tools' CRI validation suite) on containerd's runc and on boxlite
# (through the libkrun test double), side by side: fails when a spec passes on
# runc and not on boxlite outside test/critest's exemption lists. The table and
# both runs' reports and logs go to $(BIN)/critest.
critest: deps
	$(MAKE) KERNELS="lean net" build testbins
	$(MAKE) critest-run

critest-run:
	$(GO) vet -tags critest ./test/critest
	@set -o pipefail; $(GO) test -tags critest -count=1 -timeout 80m -v ./test/critest 2>&1 | tee $(BIN)/critest.log \
		| grep -v -e '^=== ' || { echo "make critest: failed; the full log is $(BIN)/critest.log, reports in $(BIN)/critest" >&2; exit 1; }

# Each fuzz target for a bounded number of inputs (FUZZTIME each: a count, as
# a duration makes go test fail with "context deadline exceeded" on a loaded
# machine); failures land in testdata/fuzz.
FUZZTIME ?= 100000x
FUZZ     := config:FuzzParse config:FuzzCheckAnnotations kernel:FuzzInspect kernel:FuzzInspectCapabilities kernel:FuzzSelect
fuzz:
	@set -e; for t in $(FUZZ); do \
		echo "fuzz ./$${t%%:*} $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) ./$${t%%:*}; \
	done

BENCHFLAGS ?=
# Boxlite (through the libkrun test double where no guest boots) vs runc, one private containerd.
bench: deps
	$(MAKE) KERNELS="lean net" build testbins
	$(GO) run -tags 'kernel_lean kernel_net' ./test/bench -out $(BIN)/bench.json $(BENCHFLAGS)

demo: deps
	$(MAKE) KERNELS="lean net" build testbins
	deploy/demo.sh

# Docker-in-docker in a CRI pod (boxlite-net), and the same pod refused on
# lean: test/dind's suite, verbose (guests on libkrun where check boots one,
# else on the emulated engine). make test runs the same suite.
demo-dind: deps
	$(MAKE) KERNELS="lean net" build testbins
	deploy/demo-dind.sh

# The release tarball an operator installs (README "Releases"). Its version is
# the tag less a leading v when HEAD is on an annotated tag in a clean tree,
# else git describe --always --dirty (deploy/release/version.sh); the binaries,
# built with both kernels into a scratch directory, report it. -trimpath and
# -buildvcs=false (the version and commit are in -ldflags): the binaries do not
# depend on where the checkout is, nor on whether it is a clone or a worktree.
# Every entry's mtime is the commit's time (SOURCE_DATE_EPOCH, if set, wins).
DIST              ?= dist
RELEASE_VERSION   ?= $(shell deploy/release/version.sh)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
release:
	@set -e; test -n '$(SOURCE_DATE_EPOCH)' || { echo "make release: no commit time (not a git checkout?): set SOURCE_DATE_EPOCH" >&2; exit 1; }; \
	stage=$$(mktemp -d); trap 'rm -rf "$$stage"' EXIT; \
	echo "make release: $(RELEASE_VERSION), binaries built into $$stage"; \
	GOFLAGS="$$GOFLAGS -trimpath -buildvcs=false" $(MAKE) --no-print-directory KERNELS="lean net" VERSION='$(RELEASE_VERSION)' BIN="$$stage" build; \
	$(GO) run ./deploy/release -version '$(RELEASE_VERSION)' -revision '$(REVISION)' -epoch '$(SOURCE_DATE_EPOCH)' \
		-bin "$$stage" -src . -out '$(DIST)'

clean:
	rm -rf $(BIN) kernel/blobs/lean kernel/blobs/net

FORCE:
