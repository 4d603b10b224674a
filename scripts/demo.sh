#!/usr/bin/env bash
# The main job: a local Redis, workers contending for a lock, fencing at work.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-redis.sh
ensure_redis_server
exec cargo run --quiet --release -p redlease --example contend
