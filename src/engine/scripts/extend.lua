-- Sets a new TTL of ARGV[2] ms on every key in KEYS, only when every one of
-- them still holds the owner's value ARGV[1]; returns 1 when it did, else 0.
-- A lease is extended only by its owner, and never in part.
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1
