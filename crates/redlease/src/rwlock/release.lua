-- Give back this reader's share (or a share handed to it, when it leaves the waiters: ARGV[1]
-- is then its waiter entry, which leaves the waiters too). After the last share the lock is
-- free and goes to the next waiters (hand_off.lua).
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- readers' labels
-- ARGV[1] token (or waiter entry), ARGV[2] how long a lock handed to a waiter is kept for it
-- (ms), ARGV[3] '1' to skip waiters nobody hears
-- Returns DONE released | GONE the share had ended | HELD a writer holds the lock | WRONG_TYPE
local token = string.sub(ARGV[1], 1, 32)
if #ARGV[1] > 32 then
  redis.call('LREM', KEYS[3], 0, ARGV[1])
end
local refused, free = not_shared(KEYS[1])
if refused then
  if free then
    -- Free: the next waiters' now.
    hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
  end
  return refused
end
local now = server_ms()
local ends = tonumber(redis.call('ZSCORE', KEYS[4], token))
redis.call('ZREM', KEYS[4], token)
redis.call('HDEL', KEYS[5], token)
prune(KEYS[4], KEYS[5], now)
if not expire_with_last(KEYS[4], {KEYS[1], KEYS[4], KEYS[5]}) then
  hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
end
if ends and ends > now then
  return reply(DONE, 0)
end
return reply(GONE, 0)
