-- Set a new TTL on the lock key only if it still holds our token; never recreates the key.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] TTL in milliseconds
-- Returns DONE extended | GONE already gone | HELD another owner holds it | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then return wrong_type(1) end
if not value then return reply(GONE) end
if string.sub(value, 1, #ARGV[1]) ~= ARGV[1] then return reply(HELD, redis.call('PTTL', KEYS[1])) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return reply(DONE)
