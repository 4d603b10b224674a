-- Take the lease when the lock key is free, or find it ours already: after a lost reply, or
-- because a release handed it to this listed waiter (hand_off.lua). Then the key gets our
-- value (token and label) and TTL. When another owner holds it, list the waiter so that a
-- release hands it the lock.
-- KEYS[1] lock key, KEYS[2] fence counter (no TTL), KEYS[3] waiters
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] holder label (stored after the token),
-- ARGV[4] the waiter entry to list when held ('' for none), ARGV[5] how long the waiters list
-- lives without a new entry (ms), ARGV[6] '1' when the entry may be listed already (or the lock
-- handed to it), ARGV[7] '1' when an earlier attempt's outcome is unknown
-- Returns DONE, fence | HELD, pttl of the other owner's key (-1: it has no expiry)
--       | WRONG_TYPE: the lock key is not a string, or the fence counter is not a number
if redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  local fence = redis.pcall('INCR', KEYS[2])
  if type(fence) == 'number' and fence > 0 then
    unlist_waiter(KEYS[3])
    return reply(DONE, fence)
  end
  -- Scripts are not rolled back: undo the SET so a failed acquire leaves nothing behind.
  redis.call('DEL', KEYS[1])
  return wrong_type(2)
end
if ARGV[6] == '1' or ARGV[7] == '1' then
  local value = redis.pcall('GET', KEYS[1])
  if type(value) == 'table' then
    return wrong_type(1)
  end
  if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2])
    unlist_waiter(KEYS[3])
    return reply(DONE, tonumber(redis.call('GET', KEYS[2])) or 0)
  end
end
-- Another primitive's keys (a semaphore's), or foreign data, are not a holder to wait for.
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return wrong_type(1)
end
local pttl = redis.call('PTTL', KEYS[1])
list_waiter(KEYS[3])
return reply(HELD, pttl)
