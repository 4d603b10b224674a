-- The waiter entry of an acquire script's attempt (every primitive's attempt starts with the
-- same arguments, `attempt_args` in lock/scripts.rs): ARGV[4] the entry to list when it must
-- wait ('' for none), ARGV[5] how long the waiters list lives without a new entry (ms),
-- ARGV[6] '1' when the entry may be listed already.

-- Lists the entry at the end of `waiters` (once), and keeps the list alive.
local function list_waiter(waiters)
  if ARGV[4] ~= '' then
    if ARGV[6] ~= '1' or not redis.call('LPOS', waiters, ARGV[4]) then
      redis.call('RPUSH', waiters, ARGV[4])
    end
    redis.call('PEXPIRE', waiters, ARGV[5])
  end
end

-- The hold is granted: the entry, if it may be listed, leaves `waiters`.
local function unlist_waiter(waiters)
  if ARGV[6] == '1' then
    redis.call('LREM', waiters, 0, ARGV[4])
  end
end
