#!/usr/bin/env bash
# Regenerates every go:generate output in a copy of the tree and fails if
# any differs from the one in the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp"
(cd "$tmp" && go generate ./...)

status=0
while IFS= read -r -d '' f; do
	rel=${f#"$tmp"/}
	if ! cmp -s "$f" "$rel" 2>/dev/null; then
		diff -u "$rel" "$f" 2>/dev/null || [ -e "$rel" ] || echo "new file from go generate: $rel"
		status=1
	fi
done < <(find "$tmp" -type f -print0)
if [ "$status" != 0 ]; then
	echo "check-generated: generated files are stale; run 'make generate' and commit" >&2
fi
exit "$status"
