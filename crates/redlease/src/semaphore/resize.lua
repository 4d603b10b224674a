-- An operator changes a semaphore's limit while permits are held. A higher limit hands the new
-- permits to the oldest waiters at once; with a lower one, holders whose slot is not below it
-- keep their permits until they end, unrenewed (extend.lua), and no permit is granted until
-- fewer than the new limit are held.
-- KEYS[1] permits, KEYS[2] permits' info, KEYS[3] fence counter, KEYS[4] waiters
-- ARGV[1] the new limit, ARGV[2] how long a permit handed to a waiter is kept for it (ms),
-- ARGV[3] '1' to skip waiters nobody hears
-- Returns DONE, the previous limit | GONE: no permit is held (the next acquire's limit takes
-- effect) | WRONG_TYPE
local held = redis.pcall('ZCARD', KEYS[1])
if type(held) == 'table' then
  return wrong_type(1)
end
local now = server_ms()
prune(KEYS[1], KEYS[2], now)
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return reply(GONE, 0)
end
local previous = tonumber(redis.call('HGET', KEYS[2], 'limit')) or 0
redis.call('HSET', KEYS[2], 'limit', ARGV[1])
hand_permits(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, ARGV[2], ARGV[3])
expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
return reply(DONE, previous)
