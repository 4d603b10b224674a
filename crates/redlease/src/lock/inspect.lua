-- Read what a name holds, changing nothing (for inspect): the lock key's value and PTTL (a
-- writer's token and label, or SHARED with the readers' shares), or a semaphore's permits and
-- limit; the fence counter; the waiter entries. Holds that ended are left out; the others come
-- as token, what its holder stored, and the milliseconds left by the server's clock.
-- KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] waiters, KEYS[4] readers' shares, KEYS[5]
-- readers' labels, KEYS[6] a semaphore's permits' info
-- Returns DONE, the fields value, pttl, fence, limit, then the waiters, the shares and the
-- permits (each a count, then its items), every field as "length:bytes" | WRONG_TYPE
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local kind = redis.call('TYPE', KEYS[1]).ok
local function live(set, info)
  local holds = {}
  local all = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local ends = tonumber(all[i + 1])
    if ends > now then
      holds[#holds + 1] = all[i]
      holds[#holds + 1] = redis.call('HGET', info, all[i]) or ''
      holds[#holds + 1] = ends - now
    end
  end
  return holds
end
local value, shares, permits, limit = false, {}, {}, false
if kind == 'string' then
  value = redis.call('GET', KEYS[1])
  if value == SHARED then
    local found = redis.call('TYPE', KEYS[4]).ok
    if found ~= 'zset' and found ~= 'none' then
      return wrong_type(4)
    end
    shares = live(KEYS[4], KEYS[5])
  end
elseif kind == 'zset' then
  local found = redis.call('TYPE', KEYS[6]).ok
  if found ~= 'hash' and found ~= 'none' then
    return wrong_type(6)
  end
  permits = live(KEYS[1], KEYS[6])
  limit = redis.call('HGET', KEYS[6], 'limit')
elseif kind ~= 'none' then
  return wrong_type(1)
end
local fence = redis.pcall('GET', KEYS[2])
if type(fence) == 'table' then
  return wrong_type(2)
end
local waiters = redis.pcall('LRANGE', KEYS[3], 0, -1)
if waiters.err then
  return wrong_type(3)
end
local fields = {}
local function put(field)
  field = tostring(field)
  fields[#fields + 1] = #field .. ':' .. field
end
put(value or '')
put(redis.call('PTTL', KEYS[1]))
put(fence or '0')
put(limit or '')
for _, list in ipairs({waiters, shares, permits}) do
  put(#list)
  for _, item in ipairs(list) do
    put(item)
  end
end
return reply(DONE, table.concat(fields))
