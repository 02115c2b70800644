-- The compare-and-swap behind `update`: writes ARGV[2] with a TTL of ARGV[3] ms (deletes the
-- key when that is 0) only if the key still holds ARGV[1].
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the value the caller expects (what it loaded)
-- ARGV[2]  the new value
-- ARGV[3]  the new TTL in ms (0: the record has already expired)
-- ARGV[4]  how many ms the caller's clock runs ahead of the wall clock: a key whose TTL ends
--          before the caller's "now" counts as gone, as it does in `load` (tests move the clock)
--
-- Replies {0} missing, {1} stored, {2, current, pttl} conflict, {3} not a string.
--
-- The common path is two calls (GET, SET): a WRONGTYPE error from GET stands in for a TYPE
-- check, and the TTL is read only when it is needed (a clock ahead, or a conflict). Every call
-- inside a script costs Redis a command dispatch; this script used to make four.
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then return {3} end
if not current then return {0} end
local ahead = tonumber(ARGV[4])
local ttl = nil
if ahead > 0 then
  ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl <= ahead then return {0} end
end
if current ~= ARGV[1] then
  return {2, current, ttl or redis.call('PTTL', KEYS[1])}
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {1}
