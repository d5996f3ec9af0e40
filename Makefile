# amqprpc: `make demo` runs the example, `make test` runs every test.
# Both first make sure a RabbitMQ answers at AMQP_URL (see `make broker`).

AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export AMQP_URL

GO ?= go

.PHONY: all broker generate check-generated lint test chaos cluster-test fuzz bench demo

all: lint test

## broker: make sure a RabbitMQ answers at AMQP_URL (start or install it if local)
broker:
	@scripts/broker.sh

## generate: run every go:generate line
generate:
	$(GO) generate ./...

## check-generated: fail if a committed generated file differs from a fresh one
check-generated:
	@scripts/check-generated.sh

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: not formatted:" $$out >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags chaos ./chaos
	$(GO) vet -tags cluster ./cluster

# The broker nodes that tests start for themselves (scripts/cluster.sh), each
# with its own name, ports, data and Erlang cookie under /tmp, removed after:
# make test and make chaos never reconfigure or disturb a broker the machine runs.
TEST_NODE = AMQPRPC_CLUSTER_DIR=/tmp/amqprpc-test-node AMQPRPC_CLUSTER_PORT=5801 AMQPRPC_CLUSTER_TLS=1
CHAOS_NODE = AMQPRPC_CLUSTER_DIR=/tmp/amqprpc-chaos-node AMQPRPC_CLUSTER_PORT=5811

## test: lint, check-generated and every test (with the race detector), against a broker
## node of their own (AMQP on 5801, over TLS on 5901), and against the real oslo.messaging
## (Debian's python3-oslo.messaging, installed when missing: scripts/python-oslo.sh)
test: lint check-generated
	@scripts/python-oslo.sh
	@scripts/asyncapi.sh examples/calc/calc_amqprpc.asyncapi.json examples/inventory/inventory_amqprpc.asyncapi.json interop/oslo/calc_amqprpc.oslo.asyncapi.json
	@scripts/asyncapi.sh -messages interop/oslo/calc_amqprpc.oslo.asyncapi.json interop/oslo/testdata/capture.jsonl
	@$(TEST_NODE) scripts/cluster.sh stop
	@$(TEST_NODE) scripts/cluster.sh start 1
	@trap '$(TEST_NODE) scripts/cluster.sh stop' EXIT; \
	  $(TEST_NODE) AMQP_URL=amqp://guest:guest@127.0.0.1:5801/ AMQPRPC_TLS_ADDR=localhost:5901 AMQPRPC_TLS_DIR=/tmp/amqprpc-test-node/tls \
	  $(GO) test -race -count=1 ./...

## chaos: fault tests: load while the broker drops, stops, stalls, alarms, and servers die,
## and three times the load a server can take for a minute, against a broker node of their own (5811)
chaos:
	@$(CHAOS_NODE) scripts/cluster.sh stop
	@$(CHAOS_NODE) scripts/cluster.sh start 1
	@trap '$(CHAOS_NODE) scripts/cluster.sh stop' EXIT; \
	  $(CHAOS_NODE) AMQP_URL=amqp://guest:guest@127.0.0.1:5811/ $(GO) test -tags chaos -count=1 -v -timeout 10m ./chaos

## bench: amqprpc against a hand-written amqp091-go RPC and a broker ping-pong, in one
## interleaved run (a few minutes), on the local broker and on a three-node cluster of its
## own, then the runtime's micro-benchmarks; writes bench/RESULTS.md
bench: broker
	@scripts/cluster.sh stop
	@scripts/cluster.sh start
	@trap 'scripts/cluster.sh stop' EXIT; $(GO) run ./bench -out bench/RESULTS.md -cluster $$(scripts/cluster.sh urls | paste -sd, -)
	@{ printf '\n## Micro-benchmarks\n\nThe per-call work of the runtime without the network (`go test -bench . -benchmem ./runtime ./internal/...`):\n\n```\n'; \
	  $(GO) test -run '^$$' -bench . -benchmem -count 3 ./runtime ./internal/... | grep -E '^(Benchmark|goos|goarch|cpu|pkg)'; \
	  printf '```\n'; } >> bench/RESULTS.md
	@cat bench/RESULTS.md

## cluster-test: start three RabbitMQ nodes of the project's own (scripts/cluster.sh),
## lose nodes under load (stop, kill -9, pause, freeze for 60 s, network cut, rolling restart,
## a classic queue's node), measure the failover, and remove the nodes
cluster-test:
	@scripts/cluster.sh stop
	@scripts/cluster.sh start
	@trap 'scripts/cluster.sh stop' EXIT; $(GO) test -tags cluster -count=1 -v -timeout 20m ./cluster

## fuzz: fuzz the request decoders, the JSON reader and the header reader for a minute each (the seed corpus runs in make test)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 60s ./runtime
	$(GO) test -run '^$$' -fuzz FuzzSplitRequests -fuzztime 60s ./runtime
	$(GO) test -run '^$$' -fuzz FuzzSanitizeHeaderFrame -fuzztime 60s ./runtime
	$(GO) test -run '^$$' -fuzz FuzzDecodeOsloRequest -fuzztime 60s ./runtime
	$(GO) test -run '^$$' -fuzz FuzzBatchMetadata -fuzztime 60s ./runtime
	$(GO) test -run '^$$' -fuzz FuzzScanClassicRequest -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzScanRequestEntries -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzValueEnd -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzMembersOf -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzScanOsloHead -fuzztime 60s ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzScanReplyEntries -fuzztime 60s ./internal/wire

## demo: run the calc example: a server, and a client that prints 2 + 3
demo: broker
	@scripts/demo.sh
