-- cancel: a queued run ends cancelled without starting; a running one (when
-- ARGV[6] is '1') is marked cancel_requested and its node is told on its
-- channel (PUBLISH <prefix>ev:<node> "c:<id>"): that node cancels it and
-- finishes it cancelled through the fenced finish.
-- KEYS: run:<id>, runs   ARGV: group, message, finished, ttl_s, prefix, running_too
-- Returns 1 cancelled, 2 sent to the running node, 0 neither (ended, or
-- running and running_too is '0').
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'running' and ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  local node = redis.call('HGET', KEYS[1], 'node')
  if node then redis.call('PUBLISH', ARGV[5] .. 'ev:' .. node, 'c:' .. redis.call('HGET', KEYS[1], 'id')) end
  return 2
end
if st ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
           'error_message', ARGV[2], 'finished', ARGV[3])
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  local s = redis.call('HGET', KEYS[1], 'stream') or KEYS[2]
  redis.call('XACK', s, ARGV[1], e)
  redis.call('XDEL', s, e)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
local gw = redis.call('HGET', KEYS[1], 'gateway')
if gw then redis.call('PUBLISH', ARGV[5] .. 'ev:' .. gw, 'd:' .. redis.call('HGET', KEYS[1], 'id')) end
return 1
