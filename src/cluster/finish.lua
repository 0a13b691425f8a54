-- finish: the result, only from the current attempt of a run not ended;
-- then the entry is acknowledged and deleted (the stream only holds work
-- in flight) and the record expires. Else the late result is counted.
-- KEYS: run:<id>, runs, stale   ARGV: attempt, group, ttl_s, field, value, ...
-- Returns 1 written, 0 stale.
local st = redis.call('HGET', KEYS[1], 'status')
local a = redis.call('HGET', KEYS[1], 'attempt')
if (st ~= 'queued' and st ~= 'running') or a ~= ARGV[1] then
  redis.call('INCR', KEYS[3])
  return 0
end
local fv = {}
for i = 4, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fv))
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  redis.call('XACK', KEYS[2], ARGV[2], e)
  redis.call('XDEL', KEYS[2], e)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
