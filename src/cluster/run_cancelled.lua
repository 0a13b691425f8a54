-- run_cancelled: ends the run whose record is key `cancelled` (the message,
-- finished time), its request dropped, its stream entry acknowledged and
-- deleted (from the stream the record names, else the shared one: runs),
-- its record expiring in ttl_s, and its gateway told (d:<id>).
-- Not a script of its own: cancel.lua and gaveup.lua include it
-- (embed.py pastes it in place of their "-- include run_cancelled.lua" line).
-- The run leaves its tenant's queued runs (queued.lua), if it was one.
-- include queued.lua
local function run_cancelled(key, runs, group, message, finished, ttl_s, prefix)
  redis.call('HSET', key, 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
             'error_message', message, 'finished', finished)
  redis.call('HDEL', key, 'request_json')
  queued_set(prefix, key, false)
  local e = redis.call('HGET', key, 'entry')
  if e then
    local s = redis.call('HGET', key, 'stream') or runs
    redis.call('XACK', s, group, e)
    redis.call('XDEL', s, e)
  end
  redis.call('EXPIRE', key, ttl_s)
  local gw = redis.call('HGET', key, 'gateway')
  if gw then redis.call('PUBLISH', prefix .. 'ev:' .. gw, 'd:' .. redis.call('HGET', key, 'id')) end
end
