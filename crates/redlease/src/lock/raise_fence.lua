-- Redlock fencing: raise this node's counter to at least the fence the client was granted, so
-- that any later majority, which shares a node with this one, increments past it.
-- KEYS[1] fence counter; ARGV[1] fence
-- Returns DONE | WRONG_TYPE: the counter is not a string
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then return wrong_type(1) end
if (tonumber(current) or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return reply(DONE)
