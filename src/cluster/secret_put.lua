-- secret_put: a tenant's secret, sealed by the node (never plaintext here),
-- created or replaced; the count check and the write in one step.
-- KEYS: sec:<tenant> (hash: name -> sealed box), secdates:<tenant> (hash:
--       name -> "CREATED UPDATED", realtime µs), sectenants (set of tenants)
-- ARGV: tenant, name, box, now (µs), the most secrets a tenant holds.
-- Returns 1 stored, 0 refused: a new name when the tenant holds the most.
local dates = redis.call('HGET', KEYS[2], ARGV[2])
local created = ARGV[4]
if dates then
  created = string.match(dates, '^(%d+)') or ARGV[4]
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], created .. ' ' .. ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
