-- The start of every redlease script (prepended by src/script/mod.rs).
-- Reply codes, the same in every script and decoded in one place (src/script/mod.rs):
--   DONE        the script did what it was asked (granted, released, extended, ...)
--   GONE        the key it acts on does not exist (expired, released, never held)
--   HELD        another owner holds it; the detail is that key's PTTL
--   WRONG_TYPE  a key holds data redlease did not write; the detail is "position TYPE"
local DONE, GONE, HELD, WRONG_TYPE = 1, 0, -1, -2
-- The first argument is a nonce for this request, echoed first in every reply so that the
-- client can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
-- Every reply is one string, "nonce code detail": a table would cost Redis several times more
-- to send. Numbers are written in full (Lua's own formatting would round large ones).
local function reply(code, detail)
  if type(detail) == 'number' then
    detail = string.format('%d', detail)
  end
  return nonce .. ' ' .. code .. ' ' .. (detail or '0')
end
local function wrong_type(position)
  return reply(WRONG_TYPE, position .. ' ' .. redis.call('TYPE', KEYS[position]).ok)
end
