-- A reader's share can only be there while readers hold the lock key (SHARED, shared.lua): the
-- reply when they do not (a writer holds it: HELD; nobody does: GONE), nil when they do.
local function not_shared(lock)
  local value = redis.pcall('GET', lock)
  if type(value) == 'table' then
    return {WRONG_TYPE, {1, redis.call('TYPE', lock).ok}, nonce}
  end
  if value == SHARED then
    return nil
  end
  if value then
    return {HELD, redis.call('PTTL', lock), nonce}
  end
  return {GONE, 0, nonce}
end
