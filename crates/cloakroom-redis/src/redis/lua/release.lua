-- Lets go of a lock, but only the holder's own: a lock whose TTL ran out and that another
-- server has taken since is left to that server.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the token the holder set it to
--
-- Replies 1 when the lock was deleted, 0 when it held another token or was gone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
