-- A new DAG run in Redis (docs/cluster.md "DAG runs"): its record and
-- definition, the creating node's owner lease, the running set and the
-- tenant's listing index, in one step.
-- With an Idempotency-Key (KEYS[5], the key's name): a key already used
-- answers the DAG run it names and creates nothing (the same submit sent
-- again through another gateway after this one's answer was lost, or a
-- frozen gateway reading it late); else the key names the new run for
-- ARGV[7] seconds.
-- KEYS: dagowner:<id>, dag:<id>, dags:running, dagidx:<tenant>[, dagidem:<tenant>:<key>]
-- ARGV: node, lease ttl ms, id, created (µs), record JSON, files JSON[, key ttl s]
-- Returns 1 (created), 0 (the id is taken), or the key's first DAG run id.
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then return first end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'rec', ARGV[5], 'files', ARGV[6])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
if KEYS[5] then redis.call('SET', KEYS[5], ARGV[3], 'EX', ARGV[7]) end
return 1
