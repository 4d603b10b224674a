-- Break a lock whoever holds it (an operator's decision): delete the lock key, keep the fence
-- counter so the next holder's token is still larger, and wake waiters.
-- KEYS[1] lock key
-- Returns the deleted value (token followed by the holder's label), or false if there was none.
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return value end
if value then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return {value, nonce}
