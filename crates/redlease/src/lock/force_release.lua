-- Break a lock whoever holds it (an operator's decision): delete the lock key, keep the fence
-- counter so the next holder's token is still larger, and wake waiters.
-- KEYS[1] lock key
-- Returns DONE, the deleted value (token followed by the holder's label) | GONE: nobody held it
--       | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return {WRONG_TYPE, {1, redis.call('TYPE', KEYS[1]).ok}, nonce} end
if not value then return {GONE, 0, nonce} end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return {DONE, value, nonce}
