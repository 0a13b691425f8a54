-- reclaim: entries idle past the claim timeout whose node's lease has
-- expired move to this node. A run that ended meanwhile is acknowledged;
-- one that was running with its attempts used up ends lost and goes to the
-- dead-letter stream; any other is queued again for this node to start.
-- KEYS: runs, dead
-- ARGV: group, me, min_idle_ms, count, now_us, ttl_s, prefix
-- Returns the ids this node should start.
local pend = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
local out = {}
for _, p in ipairs(pend) do
  local eid, owner = p[1], p[2]
  if owner ~= ARGV[2] and redis.call('EXISTS', ARGV[7] .. 'node:' .. owner) == 0 then
    local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], eid)
    local id = nil
    if got[1] and got[1][2] then
      local f = got[1][2]
      for i = 1, #f, 2 do if f[i] == 'id' then id = f[i + 1] end end
    end
    local rk = id and (ARGV[7] .. 'run:' .. id)
    local st = rk and redis.call('HGET', rk, 'status')
    if st ~= 'queued' and st ~= 'running' then
      redis.call('XACK', KEYS[1], ARGV[1], eid)
      redis.call('XDEL', KEYS[1], eid)
    else
      local a = tonumber(redis.call('HGET', rk, 'attempt') or '0')
      local m = tonumber(redis.call('HGET', rk, 'max_attempts') or '1')
      local gw = redis.call('HGET', rk, 'gateway')
      if redis.call('HGET', rk, 'cancel_requested') == '1' then
        -- its node died before it could cancel it: it ends as asked.
        redis.call('HSET', rk, 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
                   'error_message', 'the run was cancelled', 'finished', ARGV[5])
        redis.call('HDEL', rk, 'request_json')
        redis.call('XACK', KEYS[1], ARGV[1], eid)
        redis.call('XDEL', KEYS[1], eid)
        redis.call('EXPIRE', rk, ARGV[6])
        if gw then redis.call('PUBLISH', ARGV[7] .. 'ev:' .. gw, 'd:' .. id) end
      elseif st == 'running' and a >= m then
        redis.call('HSET', rk, 'status', 'lost', 'exit_code', 7, 'error_type', 'Lost',
                   'error_message', 'node ' .. owner .. ' stopped while this run was in flight (attempt ' ..
                   a .. ' of ' .. m .. ')', 'finished', ARGV[5])
        redis.call('HDEL', rk, 'request_json')
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'id', id, 'node', owner, 'attempts', a)
        redis.call('XACK', KEYS[1], ARGV[1], eid)
        redis.call('XDEL', KEYS[1], eid)
        redis.call('EXPIRE', rk, ARGV[6])
        if gw then redis.call('PUBLISH', ARGV[7] .. 'ev:' .. gw, 'd:' .. id) end
      else
        redis.call('HSET', rk, 'status', 'queued')
        out[#out + 1] = id
      end
    end
  end
end
return out
