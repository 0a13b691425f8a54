-- fn_put: the next version of a deployed function, atomically numbered.
-- KEYS: fn:<tenant>:<name> (hash: next, meta:<v>, src:<v>, desc:<v>), fns:<tenant> (set of names)
-- ARGV: name, meta (JSON), source, desc (JSON {signature, doc}; '' none).
-- Returns the version. desc is apart from meta: an invoke reads meta and
-- src, never the docstring.
local v = redis.call('HINCRBY', KEYS[1], 'next', 1)
redis.call('HSET', KEYS[1], 'meta:' .. v, ARGV[2], 'src:' .. v, ARGV[3])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'desc:' .. v, ARGV[4])
end
redis.call('SADD', KEYS[2], ARGV[1])
return v
