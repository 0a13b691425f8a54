-- The owner writes a DAG run's record and task states, fenced by its
-- lease: a node that lost dagowner:<id> (stopped, partitioned, taken over)
-- writes nothing and hears 0. final: the run ended; it leaves the running
-- set, its lease goes and its keys expire.
-- A lease that lapsed with nobody taking it (a Redis down past the lease
-- lifetime comes back with every lease expired; the owner's tick was late)
-- is still the caller's while the run is in the running set: taken back
-- here, as dagleases.lua takes it back. Before, the first write after such
-- a lapse (a task's end, before the next task's submit) read the missing
-- lease as another owner's, and the live owner stopped driving its run.
-- Another node's lease, or a run that ended (not in the set), still fence.
-- KEYS: dagowner:<id>, dag:<id>, dagtasks:<id>, dags:running
-- ARGV: node, final (1/0), ttl s, id, lease ttl ms, record JSON, then task
-- name, task JSON pairs
local owner = redis.call('GET', KEYS[1])
if owner == false and redis.call('SISMEMBER', KEYS[4], ARGV[4]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
  owner = ARGV[1]
end
if owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'rec', ARGV[6])
for i = 7, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ARGV[2] == '1' then
  redis.call('SREM', KEYS[4], ARGV[4])
  redis.call('DEL', KEYS[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return 1
