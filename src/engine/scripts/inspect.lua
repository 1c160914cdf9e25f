-- Reads one lock key without changing it: {value or nil, PTTL}. One script
-- so that the value and its TTL belong to the same moment.
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
