-- The owner writes a DAG run's record and task states, fenced by its
-- lease: a node that lost dagowner:<id> (stopped, partitioned, taken over)
-- writes nothing and hears 0. final: the run ended; it leaves the running
-- set, its lease goes and its keys expire.
-- KEYS: dagowner:<id>, dag:<id>, dagtasks:<id>, dags:running
-- ARGV: node, final (1/0), ttl s, id, record JSON, then task name, task JSON pairs
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'rec', ARGV[5])
for i = 6, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ARGV[2] == '1' then
  redis.call('SREM', KEYS[4], ARGV[4])
  redis.call('DEL', KEYS[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return 1
