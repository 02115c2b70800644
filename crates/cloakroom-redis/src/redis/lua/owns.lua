-- Whether a session is in a user's index (what `revoke` checks before deleting it).
--
-- KEYS[1]  the user's sorted set
-- ARGV[1]  the session key
--
-- Replies 1 when it is, 0 when not.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
return 0
