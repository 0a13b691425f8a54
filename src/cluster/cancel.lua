-- cancel: a queued run ends cancelled without starting; a running one (when
-- ARGV[6] is '1') is marked cancel_requested and its node is told on its
-- channel (PUBLISH <prefix>ev:<node> "c:<id>"): that node cancels it and
-- finishes it cancelled through the fenced finish. A running one whose node
-- is gone ends cancelled at once too, as a queued one: its node gave its
-- attempt up as it stopped (gave_up, gaveup.lua), or its lease expired (the
-- node stopped or died; reclaim.lua would end it so, but only a live worker
-- reclaims, and only once the entry sat idle past the claim timeout). A
-- Redis up for less than a lease lifetime plus the claim timeout (ARGV[7]
-- ms, reclaim.lua's rule) may not hold the live nodes' leases yet: there
-- the node is told, as before.
-- KEYS: run:<id>, runs   ARGV: group, message, finished, ttl_s, prefix, running_too, lease_ttl_ms + claim_timeout_ms
-- Returns 1 cancelled, 2 sent to the running node, 0 neither (ended, or
-- running and running_too is '0').
-- include run_cancelled.lua
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'running' and ARGV[6] == '1' then
  local f = redis.call('HMGET', KEYS[1], 'node', 'attempt', 'gave_up')
  local gone = f[3] ~= false and f[3] == f[2]
  if not gone and f[1] and redis.call('EXISTS', ARGV[5] .. 'node:' .. f[1]) == 0 then
    local info = redis.pcall('INFO', 'server')
    local up = type(info) == 'string' and tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or nil
    gone = up == nil or up * 1000 >= tonumber(ARGV[7])
  end
  if not gone then
    redis.call('HSET', KEYS[1], 'cancel_requested', 1)
    if f[1] then redis.call('PUBLISH', ARGV[5] .. 'ev:' .. f[1], 'c:' .. redis.call('HGET', KEYS[1], 'id')) end
    return 2
  end
  -- Its node, back after a partition, hears the cancel from its lease.
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  st = 'queued'
end
if st ~= 'queued' then return 0 end
run_cancelled(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
