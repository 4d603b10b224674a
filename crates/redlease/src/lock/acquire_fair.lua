-- Fair (FIFO) acquire: as acquire.lua, but a free lock goes to the oldest listed waiter only;
-- anyone else lists itself behind. A free lock with waiters (its last lease expired instead of
-- being released, or a waiter it was handed to never came) is handed to the oldest now.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- their labels
-- ARGV[1]..ARGV[7] as acquire.lua (ARGV[4] is this waiter's entry), ARGV[8] how long a lock
-- handed to a waiter is kept for it (ms), ARGV[9] '1' to skip waiters nobody hears
-- Returns as acquire.lua: DONE, fence | HELD, pttl (-2: free, but it is another waiter's turn)
-- | WRONG_TYPE
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  return wrong_type(1)
end
if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2])
  unlist_waiter(KEYS[3])
  return reply(DONE, tonumber(redis.call('GET', KEYS[2])) or 0)
end
if not value then
  local oldest = redis.call('LINDEX', KEYS[3], 0)
  local handed = false
  if oldest and oldest ~= ARGV[4] then
    -- Another waiter's turn: hand it the lock. If every earlier waiter is gone, the turn may
    -- be ours after all.
    handed = hand_off(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[8], ARGV[9])
    oldest = redis.call('LINDEX', KEYS[3], 0)
  end
  if not handed and (not oldest or oldest == ARGV[4]) then
    redis.call('SET', KEYS[1], ARGV[1] .. ARGV[3], 'PX', ARGV[2])
    local fence = redis.pcall('INCR', KEYS[2])
    if type(fence) ~= 'number' or fence < 1 then
      redis.call('DEL', KEYS[1])
      return wrong_type(2)
    end
    if oldest then
      redis.call('LREM', KEYS[3], 0, ARGV[4])
    end
    return reply(DONE, fence)
  end
end
list_waiter(KEYS[3])
return reply(HELD, redis.call('PTTL', KEYS[1]))
