-- The TTL-only refresh behind `touch` for values with our header (value.rs): sets a TTL of
-- ARGV[2] ms (deletes the key when that is 0) and writes the header ARGV[4] (the new expiry)
-- only if the key still holds data whose digest is ARGV[1]; the session itself is never sent.
-- A value without the header (written before it) is compared by the SHA-1 of the whole value
-- and rewritten with the header. check.lua comes first.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the digest (8 bytes: the first bytes of its SHA-1) of the data the caller loaded
-- ARGV[2]  the new TTL in ms (0: the record has already expired)
-- ARGV[3]  how many ms the caller's clock runs ahead of the wall clock (see check.lua)
-- ARGV[4]  the new header (15 bytes: its expiry, and the digest ARGV[1])
-- ARGV[5]  1 to leave a value without the header as it is (redis_legacy_values), else 0
--
-- Replies as update_framed.lua does: {0} missing, {1} stored, {2, current} or
-- {2, current, pttl} conflict, {3} not a string.
--
-- PEXPIRE with a TTL counted on the app's wall clock, not PEXPIREAT: see touch.lua.
local reply, framed, current = check_framed(ARGV[1], tonumber(ARGV[3]))
if reply then return reply end
if tonumber(ARGV[2]) <= 0 then
  redis.call('DEL', KEYS[1])
elseif framed then
  redis.call('SETRANGE', KEYS[1], 0, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif ARGV[5] == '1' then
  -- Legacy values (redis_legacy_values): the value keeps its shape, only its TTL moves.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[4] .. current, 'PX', ARGV[2])
end
return {1}
