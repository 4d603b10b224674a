-- A waiter that a release handed the lock (hand_off.lua) confirms it: the key gets the waiter's
-- value (token and label) and TTL, if it still holds the waiter's token; never recreated.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] TTL in ms, ARGV[3] holder label
-- Returns DONE confirmed | GONE the claim ran out | HELD another owner holds it | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return wrong_type(1)
end
if not value then
  return reply(GONE)
end
if string.sub(value, 1, #ARGV[1]) ~= ARGV[1] then
  return reply(HELD, redis.call('PTTL', KEYS[1]))
end
redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2])
return reply(DONE)
