-- Phase 1 of a fenced acquire. KEYS holds the lock keys, then the fencing
-- counter key of each, in the same order. ARGV: the owner's value, the TTL
-- in ms, the largest counter a token may follow (2^64 - 2: tokens are
-- 64-bit), then the key each counter had before counters moved under the
-- key prefix (`fence:<lock key>`), in the order of KEYS.
-- Locks every lock key with the owner's value for the TTL, or none of them
-- (0 when any exists, as acquire_all.lua). When it locked, returns {1,
-- highest}: the largest counter of those resources on this node, the old
-- keys included, floored at the node's clock in microseconds, so that a
-- node restarted without its data never answers less than the tokens it
-- may have seen before, and tokens never go back across the move. When
-- that is beyond the largest, fails with an error and writes nothing.
-- Counters are carried and compared as decimal strings, never as Lua
-- numbers (doubles, inexact above 2^53). The old keys are passed in ARGV:
-- Redis checks declared keys against the user's ACL before the script
-- runs, and a user without rights on them would be refused outright. Each
-- is read only when the user may read it, asked first (Redis 7) so that a
-- user who may not is not even logged as refused.
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end

-- The counter without leading zeros, or nil when it is not a decimal number.
local function decimal(value)
  if type(value) ~= 'string' then
    return nil
  end
  return string.match(value, '^0*(%d+)$')
end

-- Byte by byte, not with `>`, which follows the server's locale.
local function greater(a, b)
  if #a ~= #b then
    return #a > #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return false
end

local time = redis.call('TIME')
-- Seconds, then the microseconds padded to six digits.
local highest = time[1] .. string.rep('0', 6 - #time[2]) .. time[2]
local beyond = nil
local function consider(key, value)
  local counter = decimal(value)
  if counter and greater(counter, highest) then
    highest = counter
    if greater(counter, ARGV[3]) then
      beyond = key
    end
  end
end
for i = 1, n do
  consider(KEYS[n + i], redis.call('GET', KEYS[n + i]))
  local old = ARGV[3 + i]
  if old ~= KEYS[n + i] and (redis.acl_check_cmd == nil or redis.acl_check_cmd('GET', old)) then
    consider(old, redis.pcall('GET', old))
  end
end
if beyond then
  return redis.error_reply('ERR fencing counter ' .. beyond .. ' is at 2^64 - 1 or more: no larger token fits in 64 bits')
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return {1, highest}
