-- cancel: a queued run ends cancelled without starting.
-- KEYS: run:<id>, runs   ARGV: group, message, finished, ttl_s
-- Returns 1 cancelled, 0 not queued.
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
           'error_message', ARGV[2], 'finished', ARGV[3])
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  redis.call('XACK', KEYS[2], ARGV[1], e)
  redis.call('XDEL', KEYS[2], e)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
