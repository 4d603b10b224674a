-- A reader's share can only be there while readers hold the lock key (SHARED, shared.lua): the
-- reply when they do not (a writer holds it: HELD; nobody does: GONE, and then also true),
-- nil when they do.
local function not_shared(lock)
  local value = redis.pcall('GET', lock)
  if type(value) == 'table' then
    return wrong_type(1)
  end
  if value == SHARED then
    return nil
  end
  if value then
    return reply(HELD, redis.call('PTTL', lock))
  end
  return reply(GONE, 0), true
end
