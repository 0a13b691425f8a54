-- secret_delete: a tenant's secret and its dates. KEYS as secret_put;
-- ARGV: tenant, name. Returns 1 deleted, 0 no such secret.
local n = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return n
