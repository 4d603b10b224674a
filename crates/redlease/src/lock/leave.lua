-- A waiter gives up: it leaves the waiters, and if the lock was handed to it meanwhile (or is
-- free), the lock goes on to the next waiter now rather than when its claim runs out.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- their labels; ARGV[1] the waiter's entry, ARGV[2] how long a lock handed to a waiter is kept
-- for it (ms), ARGV[3] '1' to skip waiters nobody hears
-- Returns DONE
redis.call('LREM', KEYS[3], 0, ARGV[1])
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return reply(DONE)
end
if value == string.sub(ARGV[1], 1, 32) then
  -- Handed to us and not confirmed: a claim carries the bare token.
  if not hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3]) then
    redis.call('DEL', KEYS[1])
  end
elseif not value then
  hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
end
return reply(DONE)
