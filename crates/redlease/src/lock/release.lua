-- Delete the lock key only if it still holds our token — or hand the lock straight to the
-- oldest waiter (hand_off.lua).
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- their labels; ARGV[1] token, ARGV[2] how long a lock handed to a waiter is kept for it (ms),
-- ARGV[3] '1' to skip waiters nobody hears
-- Returns DONE released | GONE already gone | HELD another owner holds it | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return wrong_type(1)
end
if value and string.sub(value, 1, #ARGV[1]) ~= ARGV[1] then
  return reply(HELD, redis.call('PTTL', KEYS[1]))
end
-- Free on this node (ours until now, or expired): the next waiter's, else nobody's.
if not hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3]) and value then
  redis.call('DEL', KEYS[1])
end
if value then
  return reply(DONE)
end
return reply(GONE)
