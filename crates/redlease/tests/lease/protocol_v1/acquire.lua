-- Take the lease when the lock key is free, or confirm it when the key already holds our token
-- (a retry after a lost reply must not look like a conflict).
-- KEYS[1] lock key, KEYS[2] fence counter (same hash tag, no TTL)
-- ARGV[1] token, ARGV[2] TTL in milliseconds, ARGV[3] holder label (stored after the token)
-- Returns {1, fence} granted | {0, pttl} held by another owner (pttl -1: key has no expiry)
--       | {-1, type} the lock key is not a string | {-2, type} the fence counter is unusable
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
if redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  local fence = redis.pcall('INCR', KEYS[2])
  if type(fence) == 'number' and fence > 0 then
    return {1, fence, nonce}
  end
  -- Scripts are not rolled back: undo the SET so a failed acquire leaves nothing behind.
  redis.call('DEL', KEYS[1])
  return {-2, redis.call('TYPE', KEYS[2]).ok, nonce}
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' then
  return {-1, kind, nonce}
end
if string.sub(redis.call('GET', KEYS[1]), 1, #ARGV[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2])) or 0, nonce}
end
return {0, redis.call('PTTL', KEYS[1]), nonce}
