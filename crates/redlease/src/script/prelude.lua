-- The start of every redlease script (prepended by src/script/mod.rs).
-- Reply codes, the same in every script and decoded in one place (src/script/mod.rs); every
-- reply is {code, detail, nonce}:
--   DONE        the script did what it was asked (granted, released, extended, ...)
--   GONE        the key it acts on does not exist (expired, released, never held)
--   HELD        another owner holds it; the detail is that key's PTTL
--   WRONG_TYPE  a key holds data redlease did not write; the detail is {position in KEYS, TYPE}
local DONE, GONE, HELD, WRONG_TYPE = 1, 0, -1, -2
-- The first argument is a nonce for this request, echoed last in every reply so that the
-- client can tell its reply from another request's.
local nonce = table.remove(ARGV, 1)
