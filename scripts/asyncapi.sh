#!/usr/bin/env bash
# Validates AsyncAPI documents (amqprpc-gen -asyncapi) with the AsyncAPI
# project's own parser, @asyncapi/parser 3.x, installed once with npm into a
# cache directory outside the repository. Fails when a document has errors.
#
#	scripts/asyncapi.sh examples/calc/calc_amqprpc.asyncapi.json ...
#
# With -messages DOC CAPTURE, it checks instead the messages captured on
# the wire in CAPTURE (JSON lines, as RabbitMQ's firehose tracer records
# them) against DOC, an oslo mode document (amqprpc-gen -asyncapi-oslo),
# with the JSON Schema validator the parser uses (asyncapi-messages.mjs).
set -euo pipefail
if [ "$#" = 0 ] || { [ "$1" = -messages ] && [ "$#" != 3 ]; }; then
	echo "usage: scripts/asyncapi.sh FILE... | scripts/asyncapi.sh -messages DOC CAPTURE" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
node=/usr/bin/node
dir=${XDG_CACHE_HOME:-$HOME/.cache}/amqprpc/asyncapi
if [ ! -x "$node" ] || ! command -v npm >/dev/null; then
	echo "asyncapi: $node and npm are needed to validate AsyncAPI documents" >&2
	exit 1
fi
if [ ! -d "$dir/node_modules/@asyncapi/parser" ] || [ ! -d "$dir/node_modules/ajv" ]; then
	echo "asyncapi: installing @asyncapi/parser@3 and ajv@8 into $dir"
	mkdir -p "$dir"
	npm install --prefix "$dir" --no-audit --no-fund --loglevel=error @asyncapi/parser@3 ajv@8 >"$dir/npm.log" 2>&1 ||
		{ echo "asyncapi: npm install @asyncapi/parser@3 ajv@8 failed ($dir/npm.log)" >&2; exit 1; }
fi
if [ "$1" = -messages ]; then
	exec "$node" "$here/asyncapi-messages.mjs" "$dir/node_modules/ajv" "$2" "$3"
fi
NODE_PATH="$dir/node_modules" exec "$node" "$here/asyncapi-validate.mjs" "$dir/node_modules/@asyncapi/parser" "$@"
