-- Take a permit of a semaphore, or find it ours already: after a lost reply, or because a
-- release handed it to this listed waiter (permits.lua). Permits that ended are dropped first;
-- the limit is kept with the permits while any is held, and a caller with another limit is
-- refused. When every permit is held, list the waiter so that a release hands it one.
-- KEYS[1] permits (the lock key: tokens by end), KEYS[2] permits' info, KEYS[3] fence counter,
-- KEYS[4] waiters
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] label, ARGV[4] the waiter entry to list when it
-- must wait ('' for none), ARGV[5] how long the waiters list lives without a new entry (ms),
-- ARGV[6] '1' when the entry may be listed already, ARGV[7] the caller's limit, ARGV[8] '1'
-- for fair (free permits go to the oldest waiters first), ARGV[9] how long a permit handed to a
-- waiter is kept for it (ms), ARGV[10] '1' to skip waiters nobody hears
-- Returns DONE, "fence slot" | HELD, ms until the first permit ends | HELD, "limit N" (the stored
--       when the caller's limit differs | WRONG_TYPE
local mine = redis.pcall('ZSCORE', KEYS[1], ARGV[1])
if type(mine) == 'table' then
  return wrong_type(1)
end
local stored = redis.pcall('HGET', KEYS[2], 'limit')
if type(stored) == 'table' then
  return wrong_type(2)
end
local now = server_ms()
prune(KEYS[1], KEYS[2], now)
local limit = tonumber(ARGV[7])
stored = tonumber(stored)
if redis.call('ZCARD', KEYS[1]) == 0 then
  -- No permit is held: the limit kept with the last one goes with it.
  redis.call('DEL', KEYS[2])
  stored = nil
end
if stored and stored ~= limit then
  return reply(HELD, 'limit ' .. stored)
end
redis.call('HSET', KEYS[2], 'limit', limit)
if ARGV[8] == '1' then
  hand_permits(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, ARGV[9], ARGV[10])
end
local ends = now + tonumber(ARGV[2])
local slot, fence
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  slot, fence = string.match(redis.call('HGET', KEYS[2], ARGV[1]) or '', '^(%d+) (%d+)')
  redis.call('ZADD', KEYS[1], ends, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], slot .. ' ' .. fence .. ' ' .. ARGV[3])
elseif redis.call('ZCARD', KEYS[1]) < limit then
  slot, fence = grant(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ends, ARGV[3], limit)
  if not slot then
    expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
    return wrong_type(3)
  end
  -- Permits that ended unreleased may have freed more than this one: the waiters' now.
  hand_permits(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, ARGV[9], ARGV[10])
else
  list_waiter(KEYS[4])
  expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return reply(HELD, math.max(tonumber(first[2]) - now, 0))
end
expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
unlist_waiter(KEYS[4])
return reply(DONE, string.format('%d %d', tonumber(fence), tonumber(slot)))
