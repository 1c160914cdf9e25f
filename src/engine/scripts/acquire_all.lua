-- Locks every key in KEYS with the owner's value ARGV[1] for ARGV[2] ms, or
-- none of them: when any key exists, nothing is written and 0 is returned.
-- A multi-resource lock is therefore never held in part on a node.
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
