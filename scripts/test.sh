#!/bin/sh
# The whole check, as `npm test` runs it: the type check and the lints
# (first, so a missing linter or a formatting slip shows in a minute), Rust
# unit tests, and the specs against real redis-server processes (the
# installed package's too). Fails on the first failure, and when the spec
# runner ran no test at all.
set -eu
cd "$(dirname "$0")/.."

echo "== build the addon"
npx napi build --platform --release --js binding.js --dts binding.d.ts

sh scripts/lint.sh

echo "== engine stays free of napi"
if grep -rn "napi" src/engine; then
  echo "src/engine must not use napi: keep JavaScript concerns in src/binding" >&2
  exit 1
fi

echo "== cargo test"
cargo test --locked

echo "== specs"
log=$(mktemp)
set +e
node --import tsx --test --test-concurrency=1 --test-reporter=tap __tests__/*.spec.ts 2>&1 | tee "$log"
status=$?
set -e
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -n 1)
rm -f "$log"
if [ "$status" -ne 0 ] || [ "${failed:-1}" != "0" ]; then
  echo "specs failed" >&2
  exit 1
fi
if [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
  echo "no spec ran: check the __tests__/*.spec.ts glob" >&2
  exit 1
fi

echo "$passed passed, 0 failed"
