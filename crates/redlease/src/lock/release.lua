-- Delete the lock key only if it still holds our token, and tell waiters the lock is free.
-- KEYS[1] lock key, KEYS[2] fair-mode queue; ARGV[1] token
-- Returns DONE released | GONE already gone | HELD another owner holds it | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return {WRONG_TYPE, {1, redis.call('TYPE', KEYS[1]).ok}, nonce} end
if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
elseif value then
  return {HELD, redis.call('PTTL', KEYS[1]), nonce}
end
-- Free on this node (released now, or expired): a hint for waiters, who retry to find out.
-- The message names the head of the fair queue, if any: only that waiter needs to retry.
redis.call('PUBLISH', KEYS[1] .. ':released', redis.call('ZRANGE', KEYS[2], 0, 0)[1] or '')
if value then return {DONE, 0, nonce} end
return {GONE, 0, nonce}
