-- The TTL-only refresh behind `touch`: sets a TTL of ARGV[2] ms (deletes the key when that is
-- 0) only if the key's value still has the SHA-1 ARGV[1]; the session itself is never sent.
-- check.lua comes first.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the SHA-1 (40 lower-case hex digits) of the value the caller loaded
-- ARGV[2]  the new TTL in ms (0: the record has already expired)
-- ARGV[3]  how many ms the caller's clock runs ahead of the wall clock (see check.lua)
--
-- Replies as update.lua does: {0} missing, {1} stored, {2, current, pttl} conflict, {3} not a
-- string.
--
-- PEXPIRE with a TTL counted on the app's wall clock, not PEXPIREAT: every TTL this engine sets
-- and reads is relative to the app's clock (SET ... PX on writes, PTTL on loads), so a skew
-- between the app's and the server's clocks never moves an expiry; an absolute instant would
-- bring the server's clock in.
local reply = check_whole(function(current) return redis.sha1hex(current) == ARGV[1] end,
  tonumber(ARGV[3]))
if reply then return reply end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return {1}
