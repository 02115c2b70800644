-- The checks every compare-and-swap script makes before it writes, joined ahead of update.lua,
-- touch.lua, update_framed.lua and touch_framed.lua when they load (script.rs). Each returns
-- the script's reply when the write must not happen ({0} missing, {2, ...} conflict, {3} not a
-- string), else nil and what the write needs.
--
-- `ahead` is how many ms the caller's clock runs ahead of the wall clock: a key whose TTL ends
-- before the caller's "now" counts as gone, as it does in `load` (tests move the clock). The TTL
-- is read only then, or for a conflict's reply: every call inside a script costs Redis a
-- command dispatch.

-- Whether KEYS[1] ends before the caller's "now"; its PTTL when that was read.
local function gone_by_clock(ahead)
  if ahead <= 0 then return false, nil end
  local ttl = redis.call('PTTL', KEYS[1])
  return ttl >= 0 and ttl <= ahead, ttl
end

-- A whole value: `matches(current)` says whether it is the one the caller loaded. A WRONGTYPE
-- error from GET stands in for a TYPE check. Returns nil and the current value when it matches.
local function check_whole(matches, ahead)
  local current = redis.pcall('GET', KEYS[1])
  if type(current) == 'table' then return {3} end
  if not current then return {0} end
  local gone, ttl = gone_by_clock(ahead)
  if gone then return {0} end
  if not matches(current) then
    return {2, current, ttl or redis.call('PTTL', KEYS[1])}
  end
  return nil, current
end

-- A value with our header (value.rs: 0xFF, the expiry, 8 bytes of digest), compared by
-- `digest` after reading only its 15-byte header; a value written before the header is
-- compared by the first 8 bytes of its SHA-1. Returns nil and true for a framed value, or nil,
-- false and the whole value for one without the header.
local function check_framed(digest, ahead)
  local head = redis.pcall('GETRANGE', KEYS[1], 0, 14)
  if type(head) == 'table' then return {3} end
  -- GETRANGE answers "" for a missing key (and for an empty value, which no codec writes).
  if head == '' and redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
  local gone, ttl = gone_by_clock(ahead)
  if gone then return {0} end
  if #head == 15 and string.byte(head, 1) == 255 then
    if string.sub(head, 8) ~= digest then return {2, redis.call('GET', KEYS[1])} end
    return nil, true
  end
  local current = redis.call('GET', KEYS[1])
  local want = string.gsub(digest, '.', function(c) return string.format('%02x', string.byte(c)) end)
  if string.sub(redis.sha1hex(current), 1, 16) ~= want then
    return {2, current, ttl or redis.call('PTTL', KEYS[1])}
  end
  return nil, false, current
end

