-- A fair waiter gives up: leave the queue, and if the lock is free, wake the others so the
-- next in line takes it now rather than when this entry would have expired.
-- KEYS[1] lock key, KEYS[2] queue, KEYS[3] queue expiries; ARGV[1] token
-- Returns DONE
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return {DONE, 0, nonce}
