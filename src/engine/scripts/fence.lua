-- Phase 2 of a fenced acquire. KEYS holds the lock keys, then the fencing
-- counter key of each. Only while every lock key still holds the owner's
-- value ARGV[1], raises each counter to the token ARGV[2] (never lowers
-- it) and returns 1; else changes nothing and returns 0. A later owner can
-- only lock this node after our key is gone, so it reads our token here.
-- The counters have no TTL: a counter that expired could go backwards.
local n = #KEYS / 2
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
local token = tonumber(ARGV[2])
for i = 1, n do
  local counter = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if counter == nil or counter < token then
    redis.call('SET', KEYS[n + i], ARGV[2])
  end
end
return 1
