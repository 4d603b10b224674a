-- Extend this reader's own share, if it is still live (never recreated, never another's),
-- and confirm a share a release handed to it (with its label, ARGV[3]). The lock key then
-- expires with the longest share, which this reader's may not be.
-- KEYS[1] lock key, KEYS[2] readers' shares, KEYS[3] readers' labels
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] (to confirm) label
-- Returns DONE extended | GONE the share ended | HELD a writer holds the lock | WRONG_TYPE
local refused = not_shared(KEYS[1])
if refused then
  return refused
end
local now = server_ms()
local ends = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
if not ends or ends <= now then
  return reply(GONE, 0)
end
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
expire_with_last(KEYS[2], {KEYS[1], KEYS[2], KEYS[3]})
return reply(DONE, 0)
