-- fn_delete: every version of a function. KEYS as fn_put; ARGV: name.
-- Returns 1 deleted, 0 no such function.
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n
