-- A new DAG run in Redis (docs/cluster.md "DAG runs"): its record and
-- definition, the creating node's owner lease, the running set and the
-- tenant's listing index, in one step.
-- KEYS: dagowner:<id>, dag:<id>, dags:running, dagidx:<tenant>
-- ARGV: node, lease ttl ms, id, created (µs), record JSON, files JSON
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'rec', ARGV[5], 'files', ARGV[6])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
return 1
