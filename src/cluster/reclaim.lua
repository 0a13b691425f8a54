-- reclaim: on the shared stream and on every node's own stream, entries
-- idle past the claim timeout whose node's lease has expired move to this
-- node, and so do this node's own idle entries for runs it does not hold
-- (the lease keeps those it holds fresh: an idle one was delivered with a
-- reply that was lost, or dropped). A run that ended meanwhile is
-- acknowledged; one whose cancel was asked ends cancelled; one that was
-- running with its attempts used up ends lost and goes to the dead-letter
-- stream; any other is queued again for this node to start.
-- Then the affinity fallback: an entry still undelivered on another node's
-- stream after the affinity delay (its node busy, stopped or gone) is moved
-- to the shared stream, where any node takes it.
-- KEYS: runs, dead, nodes
-- A Redis that was down past the lease lifetime comes back with every
-- node's lease expired, the live nodes' too: they could not refresh it.
-- Until it has been up for a lease lifetime plus the claim timeout (the
-- live nodes have refreshed their leases and entries by then), no other
-- node's entry is taken: before, the first node to look took the runs the
-- others were still running and ran them again from the start. Redis's
-- uptime is INFO's; a Redis (an ACL) that refuses INFO to the node is
-- taken as up for long (the previous behaviour).
-- ARGV: group, me, min_idle_ms, count, now_us, ttl_s, prefix, affinity_delay_ms, lease_ttl_ms,
-- then the ids of the runs this node holds (one it holds stays as it is: its
-- lease may not have touched it yet after a Redis restart)
-- Returns the ids this node should start.
-- A run queued again is one of its tenant's queued runs again, one ended
-- here no longer (queued.lua).
-- include queued.lua
local out = {}
local held = {}
for i = 10, #ARGV do held[ARGV[i]] = true end
local info = redis.pcall('INFO', 'server')
local up = type(info) == 'string' and tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or nil
local restarted = up ~= nil and up * 1000 < tonumber(ARGV[9]) + tonumber(ARGV[3])
local streams = { KEYS[1] }
for _, n in ipairs(redis.call('SMEMBERS', KEYS[3])) do streams[#streams + 1] = ARGV[7] .. 'runs:' .. n end

local function done_with(s, eid)
  redis.call('XACK', s, ARGV[1], eid)
  redis.call('XDEL', s, eid)
end

for _, s in ipairs(streams) do
  if redis.call('EXISTS', s) == 1 then
    local pend = redis.call('XPENDING', s, ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
    for _, p in ipairs(pend) do
      local eid, owner = p[1], p[2]
      local mine = owner == ARGV[2]
      if mine or (not restarted and redis.call('EXISTS', ARGV[7] .. 'node:' .. owner) == 0) then
        local got = redis.call('XCLAIM', s, ARGV[1], ARGV[2], ARGV[3], eid)
        local id = nil
        if got[1] and got[1][2] then
          local f = got[1][2]
          for i = 1, #f, 2 do if f[i] == 'id' then id = f[i + 1] end end
        end
        local rk = id and (ARGV[7] .. 'run:' .. id)
        local st = rk and redis.call('HGET', rk, 'status')
        if mine and id and held[id] then
          -- still running here
        elseif st ~= 'queued' and st ~= 'running' then
          done_with(s, eid)
        else
          local a = tonumber(redis.call('HGET', rk, 'attempt') or '0')
          local m = tonumber(redis.call('HGET', rk, 'max_attempts') or '1')
          local gw = redis.call('HGET', rk, 'gateway')
          if redis.call('HGET', rk, 'cancel_requested') == '1' then
            -- its node died before it could cancel it: it ends as asked.
            redis.call('HSET', rk, 'status', 'cancelled', 'exit_code', 5, 'error_type', 'Cancelled',
                       'error_message', 'the run was cancelled', 'finished', ARGV[5])
            redis.call('HDEL', rk, 'request_json')
            queued_set(ARGV[7], rk, false)
            done_with(s, eid)
            redis.call('EXPIRE', rk, ARGV[6])
            if gw then redis.call('PUBLISH', ARGV[7] .. 'ev:' .. gw, 'd:' .. id) end
          elseif st == 'running' and a >= m then
            redis.call('HSET', rk, 'status', 'lost', 'exit_code', 7, 'error_type', 'Lost',
                       'error_message', 'node ' .. owner ..
                       (mine and ' lost track of this run' or ' stopped while this run was') ..
                       ' in flight (attempt ' .. a .. ' of ' .. m .. ')', 'finished', ARGV[5])
            redis.call('HDEL', rk, 'request_json')
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'id', id, 'node', owner, 'attempts', a)
            queued_set(ARGV[7], rk, false)
            done_with(s, eid)
            redis.call('EXPIRE', rk, ARGV[6])
            if gw then redis.call('PUBLISH', ARGV[7] .. 'ev:' .. gw, 'd:' .. id) end
          else
            redis.call('HSET', rk, 'status', 'queued')
            queued_set(ARGV[7], rk, true)
            out[#out + 1] = id
          end
        end
      end
    end
  end
end

-- The affinity fallback: undelivered entries are those after the group's
-- last delivered id; an id's first part is its XADD time in ms, by Redis's
-- clock: so is the cutoff (TIME), not by this node's, which may be off by
-- any amount (before, a node whose clock was an hour behind left entries
-- on a busy or dead node's stream for an hour). Scripts replicate their
-- effects (Redis >= 5), so TIME may precede writes.
local t = redis.call('TIME')
local cutoff = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[8]))
for i = 2, #streams do
  local s = streams[i]
  if s ~= ARGV[7] .. 'runs:' .. ARGV[2] and redis.call('EXISTS', s) == 1 then
    local last = '0-0'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      for j = 1, #g, 2 do if g[j] == 'last-delivered-id' then last = g[j + 1] end end
    end
    for _, e in ipairs(redis.call('XRANGE', s, '(' .. last, cutoff, 'COUNT', ARGV[4])) do
      local f, id = e[2], nil
      for j = 1, #f, 2 do if f[j] == 'id' then id = f[j + 1] end end
      redis.call('XDEL', s, e[1])
      local rk = id and (ARGV[7] .. 'run:' .. id)
      if rk and redis.call('HGET', rk, 'status') == 'queued' then
        local ne = redis.call('XADD', KEYS[1], '*', 'id', id)
        redis.call('HSET', rk, 'entry', ne, 'stream', KEYS[1])
      end
    end
  end
end
return out
