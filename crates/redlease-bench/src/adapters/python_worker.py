"""One S3 worker of redlease-bench on python-redis-lock, at the library's defaults.

Started by the bench, which reads what this prints:
  argv:   lock name, hold ns, think ns, expire s, flag file
  stdin:  the Redis URL; then, once this has printed "ready", "ORIGIN END" (CLOCK_MONOTONIC ns)
  stdout: "ready"; at the end one "C called acquired released" line per acquisition
          (CLOCK_MONOTONIC ns: acquire call, acquire return, release call), "F called
          returned" for calls that failed until the end, "V violations" and "E errors
          first-error".
The loop is the Rust workers' (scenarios.rs `contend`): take the lock (calling again after an
error), hold it for the hold time, release it, think, until the end; holds and pauses sleep and
then spin for the last 200 µs, so they are exact to a few µs. The flag file, created with
O_EXCL while a worker holds the lock, is the processes' shared "inside" flag.
"""

import os
import sys
import time

import redis
import redis_lock

SPIN_NS = 200_000
ERROR_PAUSE_NS = 1_000_000


def wait_until(deadline):
    left = deadline - time.monotonic_ns() - SPIN_NS
    if left > 0:
        time.sleep(left / 1e9)
    while time.monotonic_ns() < deadline:
        pass


def take(conn, name, expire, end, failed):
    """The lock, or None if acquire kept failing until the end."""
    lock = redis_lock.Lock(conn, name, expire=expire)
    while True:
        try:
            lock.acquire()
            return lock
        except redis.RedisError as e:
            failed(e)
            wait_until(time.monotonic_ns() + ERROR_PAUSE_NS)
            if time.monotonic_ns() >= end:
                return None


def main():
    name, flag = sys.argv[1], sys.argv[5]
    hold, think, expire = (int(a) for a in sys.argv[2:5])
    conn = redis.Redis.from_url(sys.stdin.readline().strip())
    conn.ping()
    print("ready", flush=True)
    origin, end = (int(t) for t in sys.stdin.readline().split())
    calls = []
    violations = 0
    errors = []

    def failed(e):
        errors.append(f"{type(e).__name__}: {e}")

    wait_until(origin)
    while time.monotonic_ns() < end:
        called = time.monotonic_ns()
        lock = take(conn, name, expire, end, failed)
        acquired = time.monotonic_ns()
        if lock is None:
            calls.append(f"F {called} {acquired}")
            break
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            inside = True
        except FileExistsError:
            violations += 1
            inside = False
        if acquired < end:
            wait_until(acquired + hold)
        if inside:
            os.unlink(flag)
        released = time.monotonic_ns()
        calls.append(f"C {called} {acquired} {released}")
        try:
            lock.release()
        except (redis.RedisError, redis_lock.NotAcquired) as e:
            failed(e)
        wait_until(time.monotonic_ns() + think)
    first = " ".join(errors[0].split()) if errors else ""
    calls += [f"V {violations}", f"E {len(errors)} {first}"]
    sys.stdout.write("\n".join(calls) + "\n")


main()
