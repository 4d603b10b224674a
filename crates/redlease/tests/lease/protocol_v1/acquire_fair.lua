-- Fair (FIFO) acquire: the lease goes to the longest-waiting client. Waiters queue in
-- KEYS[3] (scored by arrival time) and must refresh their entry in KEYS[4] (scored by expiry)
-- by retrying; an entry not refreshed in time (a crashed waiter) is dropped.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] queue, KEYS[4] queue expiries
-- ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] queue entry lifetime in ms, ARGV[4] holder label
-- Returns as acquire.lua: {1, fence} granted | {0, pttl} wait (pttl -2: free, but others are
-- ahead) | {-1, type} / {-2, type} wrong types
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_ms)
if #stale > 0 then
  redis.call('ZREM', KEYS[3], unpack(stale))
  redis.call('ZREM', KEYS[4], unpack(stale))
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'string' then
  return {-1, kind, nonce}
end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if kind == 'none' and (head == nil or head == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[4], 'PX', ARGV[2])
  local fence = redis.pcall('INCR', KEYS[2])
  if type(fence) ~= 'number' or fence < 1 then
    redis.call('DEL', KEYS[1])
    return {-2, redis.call('TYPE', KEYS[2]).ok, nonce}
  end
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {1, fence, nonce}
end
if kind == 'string' and string.sub(redis.call('GET', KEYS[1]), 1, #ARGV[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2])) or 0, nonce}
end
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  redis.call('ZADD', KEYS[3], string.format('%.0f', tonumber(time[1]) * 1000000 + tonumber(time[2])), ARGV[1])
end
redis.call('ZADD', KEYS[4], now_ms + tonumber(ARGV[3]), ARGV[1])
return {0, redis.call('PTTL', KEYS[1]), nonce}
