-- The compare-and-swap behind `update`: writes ARGV[2] with a TTL of ARGV[3] ms (deletes the
-- key when that is 0) only if the key still holds ARGV[1]. check.lua comes first.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the value the caller expects (what it loaded)
-- ARGV[2]  the new value
-- ARGV[3]  the new TTL in ms (0: the record has already expired)
-- ARGV[4]  how many ms the caller's clock runs ahead of the wall clock (see check.lua)
--
-- Replies {0} missing, {1} stored, {2, current, pttl} conflict, {3} not a string. The common
-- path is two calls, GET and SET.
local reply = check_whole(function(current) return current == ARGV[1] end, tonumber(ARGV[4]))
if reply then return reply end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {1}
