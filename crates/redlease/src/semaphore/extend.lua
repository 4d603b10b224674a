-- Extend this holder's own permit if it is still live (never recreated, never another's), and
-- confirm a permit a release handed to it (with its label, ARGV[3]). A permit whose slot is not
-- below the stored limit (it was lowered) is not renewed: it ends at its current end.
-- KEYS[1] permits, KEYS[2] permits' info; ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] (to
-- confirm) label
-- Returns DONE extended | GONE the permit ended, or is beyond the limit | WRONG_TYPE
local ends = redis.pcall('ZSCORE', KEYS[1], ARGV[1])
if type(ends) == 'table' then
  return wrong_type(1)
end
local now = server_ms()
ends = tonumber(ends)
if not ends or ends <= now then
  return reply(GONE, 0)
end
local slot, fence = string.match(redis.call('HGET', KEYS[2], ARGV[1]) or '', '^(%d+) (%d+)')
local limit = tonumber(redis.call('HGET', KEYS[2], 'limit'))
if slot and limit and tonumber(slot) >= limit then
  return reply(GONE, 0)
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] and slot then
  redis.call('HSET', KEYS[2], ARGV[1], slot .. ' ' .. fence .. ' ' .. ARGV[3])
end
expire_with_last(KEYS[1], {KEYS[1], KEYS[2]})
return reply(DONE, 0)
