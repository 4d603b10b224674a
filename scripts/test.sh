#!/usr/bin/env bash
# The whole test suite, against real redis-server processes the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-redis.sh
ensure_redis_server
exec cargo test --workspace --locked "$@"
