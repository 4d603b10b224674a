-- Take a share of a read-write lock (a reader), or find it ours already: after a lost reply, or
-- because a release handed it to this listed reader (hand_off.lua). Readers share the lock key
-- itself, which holds SHARED until their last share ends, so a writer (any lock client, of any
-- version) finds it taken. Writers are preferred: while a writer is listed ahead of this
-- reader, the reader waits too (listed behind it), and a free lock with waiters goes to the
-- oldest of them first.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares (token by
-- end), KEYS[5] readers' labels
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] label, ARGV[4] the waiter entry to list when it
-- must wait ('' for none), ARGV[5] how long the waiters list lives without a new entry (ms),
-- ARGV[6] '1' when the entry may be listed already, ARGV[7] how long a lock handed to a waiter
-- is kept for it (ms), ARGV[8] '1' to skip waiters nobody hears
-- Returns DONE, the fence counter (at least the latest write grant's) | HELD, pttl of the writer's key
--       | WRONG_TYPE: the lock key is not a string
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return wrong_type(1)
end
if not value then
  -- Shares without the lock key are stale (it was broken, or evicted).
  redis.call('DEL', KEYS[4], KEYS[5])
  if redis.call('LLEN', KEYS[3]) > 0 then
    -- Its last holder's lease ran out unreleased (or a waiter it was handed to never came).
    hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[7], ARGV[8])
    value = redis.call('GET', KEYS[1])
  end
end
local now = server_ms()
local mine = false
if value == SHARED then
  prune(KEYS[4], KEYS[5], now)
  mine = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if not mine then
    for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
      if entry == ARGV[4] then
        break
      end
      if string.sub(entry, 33, 33) ~= 'r' then
        value = 'a writer waits'
        break
      end
    end
  end
end
if value and value ~= SHARED then
  list_waiter(KEYS[3])
  return reply(HELD, redis.call('PTTL', KEYS[1]))
end
local ends = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[4], ends, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
if not value then
  redis.call('SET', KEYS[1], SHARED, 'PXAT', ends)
end
expire_with_last(KEYS[4], {KEYS[1], KEYS[4], KEYS[5]})
unlist_waiter(KEYS[3])
return reply(DONE, tonumber(redis.pcall('GET', KEYS[2])) or 0)
