-- token_put: a bearer token made through the API, by its sha256 only.
-- KEYS: tok:<sha256> (hash: id, tenant, role, created, expires, last_used),
--       tokids (hash: id -> sha256)
-- ARGV: id, sha256, tenant, role, created (µs), expires (µs, 0 never).
-- Returns 1, or 0 when the id or the hash is taken.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'tenant', ARGV[3], 'role', ARGV[4], 'created', ARGV[5],
           'expires', ARGV[6], 'last_used', '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
