-- Set a new TTL on the lock key only if it still holds our token; never recreates the key.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] TTL in milliseconds
-- Returns {1, 0} extended | {0, 0} already gone | {-1, 0} another owner holds it
--       | {-2, type} the key is not a string
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return {-2, redis.call('TYPE', KEYS[1]).ok, nonce} end
if not value then return {0, 0, nonce} end
if string.sub(value, 1, #ARGV[1]) ~= ARGV[1] then return {-1, 0, nonce} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, 0, nonce}
