-- Forgets a session from its user's index, with its entry.
--
-- KEYS[1]  the user's sorted set
-- ARGV[1]  the session key
--
-- Replies 1.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1] .. ':' .. ARGV[1])
return 1
