#!/usr/bin/env bash
# Runs the calc example: starts a server, adds 2 and 3 with the client,
# prints the sum, stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$bin"' EXIT
go build -o "$bin/server" ./examples/calc/cmd/server
go build -o "$bin/client" ./examples/calc/cmd/client

"$bin/server" 2>"$bin/server.log" &
pid=$!
for _ in $(seq 100); do
	grep -q "amqprpc: serving" "$bin/server.log" && break
	kill -0 "$pid" 2>/dev/null || { cat "$bin/server.log" >&2; exit 1; }
	sleep 0.1
done
"$bin/client" 2 3
