-- The TTL-only refresh behind `touch` for values with our header (value.rs): sets a TTL of
-- ARGV[2] ms (deletes the key when that is 0) and writes the header ARGV[4] (the new expiry)
-- only if the key still holds data whose digest is ARGV[1]; the session itself is never sent.
-- A value without the header (written before it) is compared by the SHA-1 of the whole value
-- and rewritten with the header.
--
-- KEYS[1]  the session's Redis key
-- ARGV[1]  the digest (8 bytes: the first bytes of its SHA-1) of the data the caller loaded
-- ARGV[2]  the new TTL in ms (0: the record has already expired)
-- ARGV[3]  how many ms the caller's clock runs ahead of the wall clock (as in update.lua)
-- ARGV[4]  the new header (15 bytes: its expiry, and the digest ARGV[1])
-- ARGV[5]  1 to leave a value without the header as it is (redis_legacy_values), else 0
--
-- Replies as update_framed.lua does: {0} missing, {1} stored, {2, current} or
-- {2, current, pttl} conflict, {3} not a string.
--
-- PEXPIRE with a TTL counted on the app's wall clock, not PEXPIREAT: see touch.lua.
local head = redis.pcall('GETRANGE', KEYS[1], 0, 14)
if type(head) == 'table' then return {3} end
if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local ahead = tonumber(ARGV[3])
local ttl = nil
if ahead > 0 then
  ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl <= ahead then return {0} end
end
local live = tonumber(ARGV[2]) > 0
if #head == 15 and string.byte(head, 1) == 255 then
  if string.sub(head, 8) ~= ARGV[1] then
    return {2, redis.call('GET', KEYS[1])}
  end
  if live then
    redis.call('SETRANGE', KEYS[1], 0, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1}
  end
else
  local current = redis.call('GET', KEYS[1])
  local want = string.gsub(ARGV[1], '.', function(c) return string.format('%02x', string.byte(c)) end)
  if string.sub(redis.sha1hex(current), 1, 16) ~= want then
    return {2, current, ttl or redis.call('PTTL', KEYS[1])}
  end
  if live and ARGV[5] == '1' then
    -- Legacy values (redis_legacy_values): the value keeps its shape, only its TTL moves.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1}
  end
  if live then
    redis.call('SET', KEYS[1], ARGV[4] .. current, 'PX', ARGV[2])
    return {1}
  end
end
redis.call('DEL', KEYS[1])
return {1}
