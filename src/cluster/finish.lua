-- finish: the result, only from the current attempt of a run not ended;
-- then the entry is acknowledged and deleted (the stream only holds work
-- in flight), the record expires, and the gateway that waits for the run
-- hears it on its channel (PUBLISH <prefix>ev:<gateway> "d:<id>").
-- Else the late result is counted.
-- KEYS: run:<id>, runs, stale   ARGV: attempt, group, ttl_s, prefix, field, value, ...
-- Returns 1 written, 0 stale.
local st = redis.call('HGET', KEYS[1], 'status')
local a = redis.call('HGET', KEYS[1], 'attempt')
if (st ~= 'queued' and st ~= 'running') or a ~= ARGV[1] then
  redis.call('INCR', KEYS[3])
  return 0
end
local fv = {}
for i = 5, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fv))
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  redis.call('XACK', KEYS[2], ARGV[2], e)
  redis.call('XDEL', KEYS[2], e)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local gw = redis.call('HGET', KEYS[1], 'gateway')
if gw then redis.call('PUBLISH', ARGV[4] .. 'ev:' .. gw, 'd:' .. redis.call('HGET', KEYS[1], 'id')) end
return 1
