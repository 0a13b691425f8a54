-- fn_delete_version: one version of a function, never the latest (what
-- an invoke without a version reads: 'next'), so HINCRBY never gives its
-- number again, nor one an alias points at (fn_alias.lua: alias:<name>
-- fields of the same hash). KEYS[1]: fn:<tenant>:<name>, KEYS[2]: nodes
-- (every node seen); ARGV: version, tenant, name, the key prefix. Every
-- node hears of it as of fn_delete ('f:<tenant>/<name>@<version>'): it
-- retires its warm instances of that version.
-- Returns 1 deleted, 0 no such version, -1 it is the latest, -2 an alias
-- points at it.
local v = tonumber(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'meta:' .. v) == 0 then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'next')) == v then
  return -1
end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 6) == 'alias:' then
    local a = cjson.decode(redis.call('HGET', KEYS[1], f))
    if tonumber(a['version']) == v then
      return -2
    end
  end
end
redis.call('HDEL', KEYS[1], 'meta:' .. v, 'src:' .. v, 'desc:' .. v)
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('PUBLISH', ARGV[4] .. 'ev:' .. node, 'f:' .. ARGV[2] .. '/' .. ARGV[3] .. '@' .. v)
end
return 1
