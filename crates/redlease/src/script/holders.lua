-- Holds that end one by one (a semaphore's permits, a read-write lock's shares): a sorted set of
-- tokens scored by when each hold ends on the server's clock (ms), beside a hash of what each
-- holder stored. Every key of the set expires with its last hold (PEXPIREAT the highest score):
-- a crashed holder's hold ends at its own time without anyone's help, one holder's shorter TTL
-- never shortens another's, and an abandoned set vanishes.

-- The server's clock in milliseconds.
local function server_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Drops the holds that ended by `now`, with what their holders stored in `info`.
local function prune(set, info, now)
  local ended = redis.call('ZRANGEBYSCORE', set, '-inf', now)
  if #ended > 0 then
    for _, token in ipairs(ended) do
      redis.call('HDEL', info, token)
    end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  end
end

-- When the last hold of `set` ends (ms), or nil when none is left; `keys` (the set's own keys
-- among them) then expire at that time, or are deleted.
local function expire_with_last(set, keys)
  local last = tonumber(redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')[2])
  for _, key in ipairs(keys) do
    if last then
      redis.call('PEXPIREAT', key, last)
    else
      redis.call('DEL', key)
    end
  end
  return last
end
