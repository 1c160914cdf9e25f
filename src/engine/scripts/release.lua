-- Deletes each key in KEYS that still holds the owner's value ARGV[1] and
-- returns how many it deleted. A key that expired and was taken by another
-- owner holds another value and is left alone.
-- With ARGV[2] = '1' (a release) it then announces each deletion on the
-- key's own channel, for waiters. The clean-up of a failed attempt passes
-- '0': that attempt never held the lock, so the waiters an announcement
-- would wake (its own caller among them) would find it held as before; a
-- waiter that such partial keys kept out, in a split vote, tries again when
-- it next looks at the TTLs.
-- All or nothing on this node: every key is read before any is deleted, so
-- an error (a key of another type) leaves them all, and the announcements
-- come last, through pcall, so a user without channel rights (Redis 7's
-- default) still releases: the answer counts the deletions, and waiters
-- then wake at the end of the lease instead.
local owned = {}
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    owned[#owned + 1] = key
  end
end
for _, key in ipairs(owned) do
  redis.call('DEL', key)
end
if ARGV[2] == '1' then
  for _, key in ipairs(owned) do
    redis.pcall('PUBLISH', key, 'released')
  end
end
return #owned
