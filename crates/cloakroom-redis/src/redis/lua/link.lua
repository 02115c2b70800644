-- Links a session to its user (after prune.lua): the session's entry keeps its first
-- `created` and takes the new `last_seen`, user agent and address; then the set is pruned.
--
-- KEYS[1]  the user's sorted set
-- ARGV[1]  the session key (the member)
-- ARGV[2]  the session's expiry, ms since the epoch (the score, and the entry's expiry)
-- ARGV[3]  `created` for a new entry, ms
-- ARGV[4]  `last_seen`, ms
-- ARGV[5]  the user agent ('' for none)
-- ARGV[6]  the client address ('' for none)
-- ARGV[7]  the wall clock, ms, for the prune
--
-- Replies 1.
local entry = KEYS[1] .. ':' .. ARGV[1]
local created = redis.call('HGET', entry, 'created') or ARGV[3]
redis.call('HSET', entry, 'created', created, 'last_seen', ARGV[4], 'ua', ARGV[5], 'ip', ARGV[6])
redis.call('PEXPIREAT', entry, ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
prune(KEYS[1], ARGV[7])
return 1
