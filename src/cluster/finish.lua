-- finish: the result, only from the current attempt of a run not ended;
-- then the entry is acknowledged and deleted (the streams only hold work
-- in flight), the record expires, the gateway that waits for the run
-- hears it on its channel (PUBLISH <prefix>ev:<gateway> "d:<id>"), and
-- this node is noted warm for the run's environment (placement hint,
-- submit.lua). Else the late result is counted.
-- KEYS: run:<id>, runs, stale
-- ARGV: attempt, group, ttl_s, prefix, node, now_ms, warm_ms, field, value, ...
-- Returns 1 written, 0 stale.
local st = redis.call('HGET', KEYS[1], 'status')
local a = redis.call('HGET', KEYS[1], 'attempt')
if (st ~= 'queued' and st ~= 'running') or a ~= ARGV[1] then
  redis.call('INCR', KEYS[3])
  return 0
end
local fv = {}
for i = 8, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fv))
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  local s = redis.call('HGET', KEYS[1], 'stream') or KEYS[2]
  redis.call('XACK', s, ARGV[2], e)
  redis.call('XDEL', s, e)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local env = redis.call('HGET', KEYS[1], 'env')
if env then
  local wk = ARGV[4] .. 'warm:' .. env
  redis.call('ZADD', wk, tonumber(ARGV[6]) + tonumber(ARGV[7]), ARGV[5])
  redis.call('PEXPIRE', wk, ARGV[7])
end
local gw = redis.call('HGET', KEYS[1], 'gateway')
if gw then redis.call('PUBLISH', ARGV[4] .. 'ev:' .. gw, 'd:' .. redis.call('HGET', KEYS[1], 'id')) end
return 1
