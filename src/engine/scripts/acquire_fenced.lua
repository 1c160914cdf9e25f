-- Phase 1 of a fenced acquire. KEYS holds the lock keys, then the fencing
-- counter key of each, in the same order. Locks every lock key with the
-- owner's value ARGV[1] for ARGV[2] ms, or none of them (0 when any exists,
-- as acquire_all.lua). When it locked, returns {1, highest}: the largest
-- counter of those resources on this node, floored at the node's clock in
-- microseconds, so that a node restarted without its data never answers
-- less than the tokens it may have seen before.
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
local time = redis.call('TIME')
local highest = tonumber(time[1]) * 1000000 + tonumber(time[2])
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  local counter = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if counter and counter > highest then
    highest = counter
  end
end
return {1, string.format('%.0f', highest)}
