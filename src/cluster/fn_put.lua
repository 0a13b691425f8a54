-- fn_put: the next version of a deployed function, atomically numbered.
-- KEYS: fn:<tenant>:<name> (hash: next, meta:<v>, src:<v>), fns:<tenant> (set of names)
-- ARGV: name, meta (JSON), source.   Returns the version.
local v = redis.call('HINCRBY', KEYS[1], 'next', 1)
redis.call('HSET', KEYS[1], 'meta:' .. v, ARGV[2], 'src:' .. v, ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return v
