-- The value of a lock key that readers share (a read-write lock held for reading): 32
-- characters no writer's token can start with, so every lock script sees an ordinary holder
-- and waits, then a label for people (older clients show "held by shared by readers").
local SHARED = '--------------------------------shared by readers'
