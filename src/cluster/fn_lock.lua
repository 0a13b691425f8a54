-- fn_lock: a deployed version's meta with its lock's URLs changed (the same
-- files found on a moved index: store.h store_function_lock_update), only
-- while the meta is still the one the caller read and changed (compare and
-- set: the JSON is rewritten by the caller, cjson would round its numbers).
-- KEYS: fn:<tenant>:<name>.  ARGV: version, the meta read, the new meta.
-- Returns 1 replaced, 0 not that meta (changed meanwhile, or no version).
local field = 'meta:' .. ARGV[1]
if redis.call('HGET', KEYS[1], field) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], field, ARGV[3])
return 1
