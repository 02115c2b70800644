-- `prune(set, now)`, prepended to the user-index scripts that call it (link.lua, list.lua):
-- drops the members of a user's sorted set whose expiry (the score, ms since the epoch) is at
-- or before `now`, with their entries, and moves the set's own expiry to its latest member's.
--
-- An entry's key is the set's key, ':', the session key, so it shares the set's hash tag and
-- cluster slot: every index script touches one slot.
local function prune(set, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now)) do
    redis.call('DEL', set .. ':' .. id)
  end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', set, last[2]) end
end
