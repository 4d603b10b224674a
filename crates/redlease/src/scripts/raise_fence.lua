-- Redlock fencing: raise this node's counter to at least the fence the client was granted, so
-- that any later majority, which shares a node with this one, increments past it.
-- KEYS[1] fence counter; ARGV[1] fence
-- Returns {1, 0} done | {-2, type} the counter is not a string
-- The first argument is a nonce for this request, echoed last in the reply so that the client
-- can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then return {-2, redis.call('TYPE', KEYS[1]).ok, nonce} end
if (tonumber(current) or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return {1, 0, nonce}
