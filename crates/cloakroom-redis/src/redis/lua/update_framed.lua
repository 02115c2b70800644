-- The compare-and-swap behind `update` for values with our header (value.rs): writes ARGV[2]
-- with a TTL of ARGV[3] ms (deletes the key when that is 0) only if the key still holds data
-- whose digest is ARGV[1]. Values without the header (written before it) are compared by the
-- SHA-1 of the whole value, and rewritten with it. check.lua comes first.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the digest (8 bytes: the first bytes of its SHA-1) of the data the caller loaded
-- ARGV[2]  the new value, header included
-- ARGV[3]  the new TTL in ms (0: the record has already expired)
-- ARGV[4]  how many ms the caller's clock runs ahead of the wall clock (see check.lua)
--
-- Replies {0} missing, {1} stored, {2, current} conflict (the current value carries its
-- expiry), {2, current, pttl} conflict on a value without the header, {3} not a string.
--
-- The common path is two calls, GETRANGE of the 15-byte header and SET: the caller sends 8
-- bytes to compare rather than the whole value it loaded, and Redis reads 15 bytes of it back.
local reply = check_framed(ARGV[1], tonumber(ARGV[4]))
if reply then return reply end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {1}
