-- secret_delete: a tenant's secret and its dates; every node hears of it
-- as of a set. KEYS as secret_put; ARGV: tenant, name, the key prefix.
-- Returns 1 deleted, 0 no such secret.
local n = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
if n > 0 then
  for _, node in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    redis.call('PUBLISH', ARGV[3] .. 'ev:' .. node, 's:' .. ARGV[1])
  end
end
return n
