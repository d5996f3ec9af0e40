#!/usr/bin/env bash
# Validates AsyncAPI documents (amqprpc-gen -asyncapi) with the AsyncAPI
# project's own parser, @asyncapi/parser 3.x, installed once with npm into a
# cache directory outside the repository. Fails when a document has errors.
#
#	scripts/asyncapi.sh examples/calc/calc_amqprpc.asyncapi.json ...
set -euo pipefail
if [ "$#" = 0 ]; then
	echo "usage: scripts/asyncapi.sh FILE..." >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
node=/usr/bin/node
dir=${XDG_CACHE_HOME:-$HOME/.cache}/amqprpc/asyncapi
if [ ! -x "$node" ] || ! command -v npm >/dev/null; then
	echo "asyncapi: $node and npm are needed to validate AsyncAPI documents" >&2
	exit 1
fi
if [ ! -d "$dir/node_modules/@asyncapi/parser" ]; then
	echo "asyncapi: installing @asyncapi/parser@3 into $dir"
	mkdir -p "$dir"
	npm install --prefix "$dir" --no-audit --no-fund --loglevel=error @asyncapi/parser@3 >"$dir/npm.log" 2>&1 ||
		{ echo "asyncapi: npm install @asyncapi/parser@3 failed ($dir/npm.log)" >&2; exit 1; }
fi
NODE_PATH="$dir/node_modules" exec "$node" "$here/asyncapi-validate.mjs" "$dir/node_modules/@asyncapi/parser" "$@"
