# sockmq build and test entry points. `make test` is what CI runs.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test deps unit vet smoke interop bench fuzz soak clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sockmq ./cmd/sockmq

# Every test: static checks, Go tests with the race detector (real sockets on
# 127.0.0.1, real MQTT clients, mosquitto interop), the interop suites with
# real npm clients and headless Chromium, and a smoke run of the README
# command. `deps` first installs what they need (scripts/test-deps.sh).
test: deps vet unit interop smoke

deps:
	bash scripts/test-deps.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

interop:
	@if [ -f interop/package.json ]; then $(MAKE) -C interop test; fi

smoke:
	bash scripts/smoke.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParsePasswordFile -fuzztime 20s ./auth
	$(GO) test -run '^$$' -fuzz FuzzParseACL -fuzztime 20s ./auth
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 20s ./internal/scproto
	$(GO) test -run '^$$' -fuzz FuzzFilterRelations -fuzztime 20s ./internal/topic
	$(GO) test -run '^$$' -fuzz FuzzPacketsAfterConnect -fuzztime 60s ./broker

# The kill -9 proof in its long form (cmd/sockmq-killtest): about 130 rounds
# that SIGKILL (and, as controls, SIGTERM) the built binary while QoS 1/2
# messages flow to persistent subscribers, restart it on the same data
# directory and fail on any lost acknowledged message or QoS 2 duplicate.
# Loopback only, about a minute. The short form is the Go test
# TestKillShortForm, part of `make test`.
soak: build
	$(GO) run ./cmd/sockmq-killtest --sockmq bin/sockmq --form long

clean:
	rm -rf bin data
