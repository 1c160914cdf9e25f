#!/bin/sh
# The health check of the lock's Redis nodes, as `npm run redis:health` runs
# it: the same options (--json, --prefix, --timeout-ms, --credentials), the
# same report and the same exit codes (0 healthy, 1 degraded, 2 down). Paths
# given to it are read from the directory it is run in.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
tsx="$root/node_modules/.bin/tsx"
if [ ! -x "$tsx" ]; then
  echo "health check failed: run 'npm install' in $root first" >&2
  exit 2
fi
exec "$tsx" "$root/infra/check-redis-cluster.ts" "$@"
