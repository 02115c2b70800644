-- The compare-and-swap behind `update` for values with our header (value.rs): writes ARGV[2]
-- with a TTL of ARGV[3] ms (deletes the key when that is 0) only if the key still holds data
-- whose digest is ARGV[1]. Values without the header (written before it) are compared by the
-- SHA-1 of the whole value, and rewritten with it.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the digest (8 bytes: the first bytes of its SHA-1) of the data the caller loaded
-- ARGV[2]  the new value, header included
-- ARGV[3]  the new TTL in ms (0: the record has already expired)
-- ARGV[4]  how many ms the caller's clock runs ahead of the wall clock: a key whose TTL ends
--          before the caller's "now" counts as gone, as it does in `load` (tests move the clock)
--
-- Replies {0} missing, {1} stored, {2, current} conflict (the current value carries its
-- expiry), {2, current, pttl} conflict on a value without the header, {3} not a string.
--
-- The common path is two calls, GETRANGE of the 15-byte header and SET: the caller sends 8
-- bytes to compare rather than the whole value it loaded, and Redis reads 15 bytes of it back.
-- A WRONGTYPE error from GETRANGE stands in for a TYPE check.
local head = redis.pcall('GETRANGE', KEYS[1], 0, 14)
if type(head) == 'table' then return {3} end
-- GETRANGE answers "" for a missing key (and for an empty value, which no codec writes).
if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local ahead = tonumber(ARGV[4])
local ttl = nil
if ahead > 0 then
  ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl <= ahead then return {0} end
end
if #head == 15 and string.byte(head, 1) == 255 then
  if string.sub(head, 8) ~= ARGV[1] then
    return {2, redis.call('GET', KEYS[1])}
  end
else
  local current = redis.call('GET', KEYS[1])
  local want = string.gsub(ARGV[1], '.', function(c) return string.format('%02x', string.byte(c)) end)
  if string.sub(redis.sha1hex(current), 1, 16) ~= want then
    return {2, current, ttl or redis.call('PTTL', KEYS[1])}
  end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {1}
