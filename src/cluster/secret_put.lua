-- secret_put: a tenant's secret, sealed by the node (never plaintext here),
-- created or replaced; the count check and the write in one step. Every
-- node hears of it ('s:<tenant>' on its ev:<node>): it retires the
-- tenant's warm instances that hold an environment.
-- KEYS: sec:<tenant> (hash: name -> sealed box), secdates:<tenant> (hash:
--       name -> "CREATED UPDATED", realtime µs), sectenants (set of tenants),
--       nodes (every node seen)
-- ARGV: tenant, name, box, now (µs), the most secrets a tenant holds, the
--       key prefix.
--       KEYS[5] (optional): seckey; ARGV[7] (with it): the key check
--       the node sealed with opened — the set is refused (-1) when seckey
--       is another now (a key rotation swapped it meanwhile: the node
--       seals again with the key that opens the new one).
-- Returns 1 stored, 0 refused: a new name when the tenant holds the most.
if KEYS[5] and redis.call('GET', KEYS[5]) ~= ARGV[7] then
  return -1
end
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
for _, n in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('PUBLISH', ARGV[6] .. 'ev:' .. n, 's:' .. ARGV[1])
end
return 1
