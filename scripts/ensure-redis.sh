# Sourced by the other scripts: makes sure a redis-server binary is available.
# The tests and the demo start their own servers on free ports; none needs to be running.
ensure_redis_server() {
  if [ -n "${REDLEASE_REDIS_SERVER:-}" ] || command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "redis-server not found; installing Debian's redis-server package" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
    return 0
  fi
  cat >&2 <<'MSG'
redis-server is not installed. Install it, then run this again:
  Debian/Ubuntu: apt-get install redis-server
  Fedora:        dnf install redis
  macOS:         brew install redis
or point REDLEASE_REDIS_SERVER at a redis-server binary.
MSG
  return 1
}
