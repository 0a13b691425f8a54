-- fn_alias: sets or deletes an alias of a deployed function, kept in the
-- function's hash as field alias:<name> (fn_delete's DEL takes it with the
-- versions). KEYS[1]: fn:<tenant>:<name>.
-- ARGV: 'put', alias, version, value (JSON {version, description, updated}),
--       mode ('any', 'create', 'update');  or 'del', alias.
-- put returns 1 created, 2 moved, 0 no such version (checked in the same
-- step as the write: fn_delete_version refuses a version an alias names),
-- -1 exists (create), -2 no such alias (update). del returns 1 or 0.
local field = 'alias:' .. ARGV[2]
if ARGV[1] == 'del' then
  return redis.call('HDEL', KEYS[1], field)
end
if redis.call('HEXISTS', KEYS[1], 'meta:' .. ARGV[3]) == 0 then
  return 0
end
local there = redis.call('HEXISTS', KEYS[1], field)
if there == 1 and ARGV[5] == 'create' then
  return -1
end
if there == 0 and ARGV[5] == 'update' then
  return -2
end
redis.call('HSET', KEYS[1], field, ARGV[4])
if there == 1 then
  return 2
end
return 1
