-- A semaphore's permits: `set` (its lock key) holds the tokens by when each permit ends,
-- `info` each holder's "slot fence label" and the stored 'limit'. Every permit has a slot below
-- the limit that no other holder has; its fence comes from the name's one fence counter, so
-- fences increase per name and so per slot. Needs holders.lua.

-- The lowest slot below `limit` that no holder has.
local function free_slot(info, limit)
  local taken = {}
  local all = redis.call('HGETALL', info)
  for i = 1, #all, 2 do
    if all[i] ~= 'limit' then
      local slot = tonumber(string.match(all[i + 1], '^%d+'))
      if slot then
        taken[slot] = true
      end
    end
  end
  for slot = 0, limit - 1 do
    if not taken[slot] then
      return slot
    end
  end
  return nil
end

-- Grants `token` a permit until `ends`: a free slot and the next fence; nil when the fence
-- counter holds something else than a number.
local function grant(set, info, fence_key, token, ends, label, limit)
  local slot = free_slot(info, limit)
  local fence = redis.pcall('INCR', fence_key)
  if not slot or type(fence) ~= 'number' or fence < 1 then
    return nil
  end
  redis.call('ZADD', set, ends, token)
  redis.call('HSET', info, token, slot .. ' ' .. fence .. ' ' .. label, 'limit', limit)
  return slot, fence
end

-- Hands the permits the limit leaves free to the oldest listed waiters whose clients still
-- listen, each for `claim_ms` until it confirms: "token fence:slot set-key" on its channel.
-- With `skip_unheard` ('1', where the server counts every receiver) an entry nobody hears is
-- dropped and its permit undone.
local function hand_permits(set, info, fence_key, waiters, now, claim_ms, skip_unheard)
  local limit = tonumber(redis.call('HGET', info, 'limit'))
  if not limit then
    return
  end
  local held = redis.call('ZCARD', set)
  local unheard = 0
  while held < limit and unheard < 16 do
    local entry = redis.call('LPOP', waiters)
    if not entry then
      return
    end
    local token = string.sub(entry, 1, 32)
    local slot, fence = grant(set, info, fence_key, token, now + tonumber(claim_ms), '', limit)
    if not slot then
      return
    end
    local heard = redis.call('PUBLISH', string.sub(entry, 34), token .. ' ' .. fence .. ':' .. slot .. ' ' .. set)
    if heard > 0 or skip_unheard ~= '1' then
      held = held + 1
    else
      redis.call('ZREM', set, token)
      redis.call('HDEL', info, token)
      unheard = unheard + 1
    end
  end
end
