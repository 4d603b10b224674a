#!/usr/bin/env bash
# The main job: `redlease demo` — local Redis nodes, worker processes taking turns on a lock
# through `redlease run`, a node killed and holders paused, and a report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-redis.sh
ensure_redis_server
exec cargo run --quiet --release -p redlease-cli -- demo "$@"
