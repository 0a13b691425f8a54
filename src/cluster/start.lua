-- start: queued -> running, attempt += 1 (the fencing token), the node.
-- KEYS: run:<id>   ARGV: started, node
-- Returns the attempt, or -1 when the run is not queued (cancelled, ended,
-- or started by another node first).
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return -1 end
local a = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started', ARGV[1], 'node', ARGV[2])
return a
