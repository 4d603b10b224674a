-- Hands a free lock to the oldest waiter whose client still listens (shared by the scripts that
-- free a lock). A waiter entry is the waiter's token (32 characters), a mode byte, and its
-- client's wake channel. The lock key is set to the waiter's token for `claim_ms` with the next
-- fence, and "token fence lock-key" is published on the waiter's channel: the waiter holds the
-- lock from now on, and confirms it with its own TTL. With `skip_unheard` ('1', where the
-- server counts every receiver), an entry whose client no longer listens (PUBLISH reaches
-- nobody: the process is gone) is dropped on the way and its claim undone, so a dead waiter is
-- never handed the lock; elsewhere the hand-off stands, as the message may still arrive.
-- Returns whether a waiter was handed it.
local function hand_off(lock, fence_key, waiters, claim_ms, skip_unheard)
  for _ = 1, 16 do
    local entry = redis.call('LPOP', waiters)
    if not entry then
      return false
    end
    local fence = redis.pcall('INCR', fence_key)
    if type(fence) ~= 'number' then
      return false
    end
    local token = string.sub(entry, 1, 32)
    redis.call('SET', lock, token, 'PX', claim_ms)
    local heard = redis.call('PUBLISH', string.sub(entry, 34), token .. ' ' .. fence .. ' ' .. lock)
    if heard > 0 or skip_unheard ~= '1' then
      return true
    end
    redis.call('DEL', lock)
  end
  return false
end
