-- Take the lease when the lock key is free, or confirm it when the key already holds our token
-- (a retry after a lost reply must not look like a conflict).
-- KEYS[1] lock key, KEYS[2] fence counter (same hash tag, no TTL)
-- ARGV[1] token, ARGV[2] TTL in milliseconds, ARGV[3] holder label (stored after the token)
-- Returns DONE, fence | HELD, pttl of the other owner's key (-1: it has no expiry)
--       | WRONG_TYPE: the lock key is not a string, or the fence counter is not a number
if redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  local fence = redis.pcall('INCR', KEYS[2])
  if type(fence) == 'number' and fence > 0 then
    return {DONE, fence, nonce}
  end
  -- Scripts are not rolled back: undo the SET so a failed acquire leaves nothing behind.
  redis.call('DEL', KEYS[1])
  return {WRONG_TYPE, {2, redis.call('TYPE', KEYS[2]).ok}, nonce}
end
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return {WRONG_TYPE, {1, redis.call('TYPE', KEYS[1]).ok}, nonce}
end
if string.sub(redis.call('GET', KEYS[1]), 1, #ARGV[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {DONE, tonumber(redis.call('GET', KEYS[2])) or 0, nonce}
end
return {HELD, redis.call('PTTL', KEYS[1]), nonce}
