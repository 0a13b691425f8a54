-- start: queued -> running, attempt += 1 (the fencing token), the node.
-- It leaves its tenant's queued runs (queued.lua).
-- KEYS: run:<id>   ARGV: started, node, prefix
-- Returns the attempt, or -1 when the run is not queued (cancelled, ended,
-- or started by another node first).
-- The same start asked again (the same node and time: its answer was lost
-- with the connection, or Redis died between its AOF write and the reply)
-- gets its attempt again: the node asks until it hears, and a start it
-- took for another's would leave the run running with nobody running it.
-- include queued.lua
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'running' and redis.call('HGET', KEYS[1], 'node') == ARGV[2] and
   redis.call('HGET', KEYS[1], 'started') == ARGV[1] then
  return tonumber(redis.call('HGET', KEYS[1], 'attempt'))
end
if st ~= 'queued' then return -1 end
local a = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started', ARGV[1], 'node', ARGV[2])
queued_set(ARGV[3], KEYS[1], false)
return a
