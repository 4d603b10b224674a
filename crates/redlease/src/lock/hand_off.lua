-- Hands a free lock to the oldest waiter whose client still listens (shared by the scripts that
-- free a lock). A waiter entry is the waiter's token (32 characters), a mode byte ('r' for a
-- reader of a read-write lock, anything else for a writer), and its client's wake channel.
-- A writer: the lock key is set to the waiter's token for `claim_ms` with the next fence, and
-- "token fence lock-key" is published on the waiter's channel: the waiter holds the lock from
-- now on, and confirms it with its own TTL. Readers at the head of the waiters share the lock
-- instead: each gets a share of `claim_ms` in `readers` (the fence is the counter's,
-- unchanged), the lock key holds SHARED (shared.lua) until the last share ends, and each is
-- told the same way; readers listed behind a writer stay listed (writers are preferred). With
-- `skip_unheard` ('1', where the server counts every receiver), an entry whose client no longer
-- listens (PUBLISH reaches nobody: the process is gone) is dropped on the way and its claim
-- undone, so a dead waiter is never handed the lock; elsewhere the hand-off stands, as the
-- message may still arrive.
-- Returns whether a waiter was handed it.
local function hand_off(lock, fence_key, waiters, readers, labels, claim_ms, skip_unheard)
  for _ = 1, 16 do
    local entry = redis.call('LPOP', waiters)
    if not entry then
      return false
    end
    if string.sub(entry, 33, 33) == 'r' then
      -- The shares of a free lock are stale (it was broken, or its key evicted): start afresh.
      redis.call('DEL', readers, labels)
      local time = redis.call('TIME')
      local ends = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(claim_ms)
      local fence = redis.pcall('GET', fence_key)
      if type(fence) ~= 'string' then
        fence = '0'
      end
      local shared = false
      while entry do
        local token = string.sub(entry, 1, 32)
        local heard = redis.call('PUBLISH', string.sub(entry, 34), token .. ' ' .. fence .. ' ' .. lock)
        if heard > 0 or skip_unheard ~= '1' then
          redis.call('ZADD', readers, ends, token)
          shared = true
        end
        entry = redis.call('LINDEX', waiters, 0)
        if entry and string.sub(entry, 33, 33) == 'r' then
          redis.call('LPOP', waiters)
        else
          entry = nil
        end
      end
      if shared then
        redis.call('SET', lock, SHARED, 'PXAT', ends)
        redis.call('PEXPIREAT', readers, ends)
        return true
      end
    else
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
  end
  return false
end
