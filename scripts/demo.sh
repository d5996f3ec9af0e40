#!/usr/bin/env bash
# Runs the calc example: starts two servers, a and b, then a client in each
# call mode: a call (2 + 3 first), a declared error, casts to named
# servers, a gather from every server, a fanout, a version cap.
# Then the inventory example: a stream left early (its server stops), one
# read to its end, a call, and a declared error that ends a stream.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT
go build -o "$bin/server" ./examples/calc/cmd/server
go build -o "$bin/client" ./examples/calc/cmd/client

for name in a b; do
	"$bin/server" -name "$name" -trace 2>"$bin/server-$name.log" &
	pids+=($!)
done
for name in a b; do
	for _ in $(seq 100); do
		grep -q "amqprpc: serving" "$bin/server-$name.log" && break
		sleep 0.1
	done
	grep -q "amqprpc: serving" "$bin/server-$name.log" || { cat "$bin/server-$name.log" >&2; exit 1; }
done

client() {
	echo "\$ client $*"
	"$bin/client" "$@"
}
client 2 3
client div 7 2
client div 1 0
client -server a store 5
client -server b store 7
sleep 0.3 # a cast returns once the broker has it, not once the server ran it
client memory
client clear
sleep 0.3
client memory
client -cap 1.0 div 1 1 || true

# A traced call: the client's span, then the server's, its child in the
# same trace, across the broker (otelamqprpc).
echo "\$ client -trace 2 3"
out=$("$bin/client" -trace 2 3)
echo "$out"
trace=$(echo "$out" | sed -n 's/.* trace=\([0-9a-f]*\) .*/\1/p' | head -1)
for _ in $(seq 50); do
	grep -h "trace=$trace" "$bin"/server-*.log && break
	sleep 0.1
done

# The inventory example: Inventory.List is a stream. Its server logs how
# each stream ended, which shows it stop when the client leaves its loop,
# having yielded at most a window of items (runtime.WithStreamWindow) and
# what it encodes ahead beyond what the client read.
go build -o "$bin/inventory-server" ./examples/inventory/cmd/server
go build -o "$bin/inventory-client" ./examples/inventory/cmd/client
"$bin/inventory-server" 2>"$bin/inventory-server.log" &
inventory_pid=$!
pids+=("$inventory_pid")
for _ in $(seq 100); do
	grep -q "amqprpc: serving" "$bin/inventory-server.log" && break
	sleep 0.1
done
grep -q "amqprpc: serving" "$bin/inventory-server.log" || { cat "$bin/inventory-server.log" >&2; exit 1; }

inventory() {
	echo "\$ inventory-client $*"
	"$bin/inventory-client" "$@"
}
inventory list -shelf A -limit 5
inventory list -shelf A -min 99
inventory count -shelf A -min 50
inventory list -shelf Z
sleep 0.3 # the server logs a stream's end once it has stopped
echo "\$ grep -o 'stream .*' inventory-server.log"
grep -o "stream .*" "$bin/inventory-server.log"
kill "$inventory_pid"
wait "$inventory_pid"
