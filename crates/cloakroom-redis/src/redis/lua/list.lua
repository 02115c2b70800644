-- Lists a user's sessions (after prune.lua): prunes the set, then answers one array per member
-- left.
--
-- KEYS[1]  the user's sorted set
-- ARGV[1]  the wall clock, ms, for the prune
--
-- Replies {{id, expires, created, last_seen, ua, ip}, ...} (times in ms since the epoch); a
-- member whose entry is gone answers {id} alone.
prune(KEYS[1], ARGV[1])
local out = {}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local f = redis.call('HMGET', KEYS[1] .. ':' .. members[i], 'created', 'last_seen', 'ua', 'ip')
  if f[1] and f[2] then
    table.insert(out, {members[i], tonumber(members[i + 1]), tonumber(f[1]), tonumber(f[2]), f[3] or '', f[4] or ''})
  else
    table.insert(out, {members[i]})
  end
end
return out
