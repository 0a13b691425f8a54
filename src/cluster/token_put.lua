-- token_put: a bearer token made through the API, by its sha256 only.
-- KEYS: tok:<sha256> (hash: id, tenant, role, created, expires, last_used),
--       tokids (hash: id -> sha256)
-- ARGV: id, sha256, tenant, role, created (µs), expires (µs, 0 never),
--       the key prefix ('ps:').
-- Returns 1, or 0 when the id or the hash is taken.
-- A token that expires is deleted by Redis then (PEXPIREAT on its key);
-- its id, a field of tokids (which cannot expire alone), goes here, at
-- the next token made: tokens are few and made seldom.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if redis.call('EXISTS', ARGV[7] .. 'tok:' .. all[i + 1]) == 0 then redis.call('HDEL', KEYS[2], all[i]) end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'tenant', ARGV[3], 'role', ARGV[4], 'created', ARGV[5],
           'expires', ARGV[6], 'last_used', '0')
local expires = tonumber(ARGV[6]) or 0
if expires > 0 then redis.call('PEXPIREAT', KEYS[1], math.floor(expires / 1000)) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
