-- Deletes each key in KEYS that still holds the owner's value ARGV[1] and
-- returns how many it deleted. A key that expired and was taken by another
-- owner holds another value and is left alone.
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
