-- gaveup: this node, stopped past its drain, has stopped the run's
-- attempt with no end written (docs/cluster.md "A worker stopped"): the
-- record says so (gave_up = the attempt), and a cancel asked from now on
-- ends the run at once (cancel.lua) rather than at its reclaim, which only
-- a live worker makes once this node's lease expired. A cancel already
-- asked (its message missed this node as it stopped) ends it here.
-- KEYS: run:<id>, runs   ARGV: node, attempt, group, finished, ttl_s, prefix
-- Returns 1 marked, 2 ended cancelled, 0 not this node's attempt any more.
local f = redis.call('HMGET', KEYS[1], 'status', 'node', 'attempt', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
if f[4] ~= '1' then
  redis.call('HSET', KEYS[1], 'gave_up', ARGV[2])
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
           'error_message', 'the run was cancelled', 'finished', ARGV[4])
redis.call('HDEL', KEYS[1], 'request_json')
local e = redis.call('HGET', KEYS[1], 'entry')
if e then
  local s = redis.call('HGET', KEYS[1], 'stream') or KEYS[2]
  redis.call('XACK', s, ARGV[3], e)
  redis.call('XDEL', s, e)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local gw = redis.call('HGET', KEYS[1], 'gateway')
if gw then redis.call('PUBLISH', ARGV[6] .. 'ev:' .. gw, 'd:' .. redis.call('HGET', KEYS[1], 'id')) end
return 2
