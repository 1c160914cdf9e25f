-- Phase 2 of a fenced acquire. KEYS holds the lock keys, then the fencing
-- counter key of each. Only while every lock key still holds the owner's
-- value ARGV[1], raises each counter to the token ARGV[2] (never lowers
-- it) and returns 1; else changes nothing and returns 0. A later owner can
-- only lock this node after our key is gone, so it reads our token here.
-- The counters have no TTL: a counter that expired could go backwards.
-- Counters are compared as decimal strings (exact at any size); one that is
-- not a decimal number is replaced.
local n = #KEYS / 2
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
-- Byte by byte, not with `<`, which follows the server's locale.
local function less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return false
end
local token = ARGV[2]
for i = 1, n do
  local value = redis.call('GET', KEYS[n + i])
  local counter = type(value) == 'string' and string.match(value, '^0*(%d+)$')
  if not counter or less(counter, token) then
    redis.call('SET', KEYS[n + i], token)
  end
end
return 1
