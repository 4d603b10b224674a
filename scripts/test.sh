#!/usr/bin/env bash
# The whole test suite, against real redis-server processes the tests start themselves: every
# test with every cargo feature on Debian's Redis 7, then (without arguments) the compatibility
# subset on Redis 6.2 and Valkey 8.1 (scripts/server-matrix.sh; REDLEASE_MATRIX=skip skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-redis.sh
ensure_redis_server
cargo test --workspace --locked --all-features "$@"
if [ $# -eq 0 ]; then
  bash scripts/server-matrix.sh
fi
