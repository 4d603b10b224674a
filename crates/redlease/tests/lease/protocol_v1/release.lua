-- Delete the lock key only if it still holds our token, and tell waiters the lock is free.
-- KEYS[1] lock key, KEYS[2] fair-mode queue; ARGV[1] token
-- Returns {1, 0} released | {0, 0} already gone | {-1, 0} another owner holds it
--       | {-2, type} the key is not a string
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return {-2, redis.call('TYPE', KEYS[1]).ok, nonce} end
if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
elseif value then
  return {-1, 0, nonce}
end
-- Free on this node (released now, or expired): a hint for waiters, who retry to find out.
-- The message names the head of the fair queue, if any: only that waiter needs to retry.
redis.call('PUBLISH', KEYS[1] .. ':released', redis.call('ZRANGE', KEYS[2], 0, 0)[1] or '')
if value then return {1, 0, nonce} end
return {0, 0, nonce}
