-- Break a lock whoever holds it (an operator's decision): delete the lock key (and the readers'
-- shares, if readers hold it), keep the fence counter so the next holder's token is still
-- larger, and hand the lock to the next waiter (protocol-1 waiters, which listen on the lock's
-- own channel, are told too).
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- their labels; ARGV[1] how long a lock handed to a waiter is kept for it (ms), ARGV[2] '1' to
-- skip waiters nobody hears
-- Returns DONE, the deleted value (token followed by the holder's label) | GONE: nobody held it
--       | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return wrong_type(1)
end
if not value then
  return reply(GONE)
end
redis.call('DEL', KEYS[4], KEYS[5])
if not hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return reply(DONE, value)
