-- fn_delete: every version of a function. KEYS: fn:<tenant>:<name>,
-- fns:<tenant>, nodes (every node seen); ARGV: name, tenant, the key
-- prefix. Every node hears of it ('f:<tenant>/<name>@0' on its ev:<node>):
-- it retires its warm instances of the function.
-- Returns 1 deleted, 0 no such function.
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if n > 0 then
  for _, node in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('PUBLISH', ARGV[3] .. 'ev:' .. node, 'f:' .. ARGV[2] .. '/' .. ARGV[1] .. '@0')
  end
end
return n
