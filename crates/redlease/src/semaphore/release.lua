-- Give back this holder's permit (or one handed to it, when it leaves the waiters: ARGV[1] is
-- then its waiter entry, which leaves the waiters too); the permits the limit leaves free go to
-- the oldest waiters (permits.lua).
-- KEYS[1] permits, KEYS[2] permits' info, KEYS[3] fence counter, KEYS[4] waiters
-- ARGV[1] token (or waiter entry), ARGV[2] how long a permit handed to a waiter is kept for it
-- (ms), ARGV[3] '1' to skip waiters nobody hears
-- Returns DONE released | GONE the permit had ended | WRONG_TYPE
local token = string.sub(ARGV[1], 1, 32)
if #ARGV[1] > 32 then
  redis.call('LREM', KEYS[4], 0, ARGV[1])
end
local ends = redis.pcall('ZSCORE', KEYS[1], token)
if type(ends) == 'table' then
  return wrong_type(1)
end
local now = server_ms()
ends = tonumber(ends)
redis.call('ZREM', KEYS[1], token)
redis.call('HDEL', KEYS[2], token)
prune(KEYS[1], KEYS[2], now)
hand_permits(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, ARGV[2], ARGV[3])
expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
if ends and ends > now then
  return reply(DONE, 0)
end
return reply(GONE, 0)
