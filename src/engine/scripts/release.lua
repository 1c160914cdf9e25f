-- Deletes each key in KEYS that still holds the owner's value ARGV[1],
-- announces it on the key's own channel for waiters, and returns how many
-- it deleted. A key that expired and was taken by another owner holds
-- another value and is left alone.
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    redis.call('PUBLISH', key, 'released')
    deleted = deleted + 1
  end
end
return deleted
