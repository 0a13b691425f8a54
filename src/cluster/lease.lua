-- lease: this node is alive (a TTL'd key holding its status) and still
-- works on the runs it holds: their entries are re-claimed to itself,
-- which resets their idle time. So only a dead or stopped node's entries,
-- or an entry this node holds without knowing it (delivered with a reply
-- that was lost, or a run it dropped), ever look idle: reclaim.lua hands
-- those on once idle past the claim timeout.
-- Then the trimming every node does about once a second:
--  * the shared stream and this node's own: XTRIM MINID below its oldest pending entry (or, with none
--    pending, just past the last delivered one). Entries below it are
--    delivered and acknowledged: done with. finish/cancel also XDEL their
--    entry so XLEN counts only work in flight; XDEL leaves tombstones in
--    the stream's nodes, XTRIM frees whole nodes.
--  * the listing indexes (idx:<tenant>, fidx:<tenant>:<fn>, ridx:<tenant>: the set "tenants"): ids whose record
--    expired are removed from the oldest, up to the first whose record is still there (at most ARGV[6] per
--    index per call; ridx's first members by rank are its oldest too: its ids begin with their creation
--    time). Records expire in about the order they were made, so that is a few reads a second; an expired
--    id behind a record that lives longer (a long run's) waits for it, and a listing skips and removes it
--    meanwhile (cluster-redis.c index_list()). Reading the ARGV[6] oldest of every index each second cost
--    Redis ~2.5 ms a call with a few thousand runs kept.
-- KEYS: node:<id>, runs, nodes, drain:<id>, tenants, runs:<id> (this node's own stream)
-- ARGV: ttl_ms, status_json, group, node_id, prefix, idx_batch, then the ids of the runs this node holds
-- Returns {1 when the node was asked to drain (else 0), the held ids whose
-- cancel was asked (cancel.lua's cancel_requested)}.
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
local cancels = {}
for i = 7, #ARGV do
  local f = redis.call('HMGET', ARGV[5] .. 'run:' .. ARGV[i], 'entry', 'stream', 'cancel_requested')
  -- A cancel asked while this node's channel was down (Redis restarting,
  -- the events connection coming back) reached nobody: it is in the
  -- record, and this node hears it here.
  if f[3] == '1' then cancels[#cancels + 1] = ARGV[i] end
  local e = f[1]
  if e then
    local s = f[2] or KEYS[2]
    local p = redis.call('EXISTS', s) == 1 and redis.call('XPENDING', s, ARGV[3], e, e, 1) or {}
    -- only while it is this node's: never taken back from a node that
    -- reclaimed it
    if #p == 1 and p[1][2] == ARGV[4] then redis.call('XCLAIM', s, ARGV[3], ARGV[4], 0, e, 'JUSTID') end
  end
end
for _, s in ipairs({ KEYS[2], KEYS[6] }) do
  if redis.call('EXISTS', s) == 1 then
    local minid = nil
    local sum = redis.call('XPENDING', s, ARGV[3])
    if sum[1] > 0 then
      minid = sum[2]
    else
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
        for i = 1, #g, 2 do
          if g[i] == 'last-delivered-id' then
            local ms, seq = string.match(g[i + 1], '^(%d+)-(%d+)$')
            if ms then minid = ms .. '-' .. (tonumber(seq) + 1) end
          end
        end
      end
    end
    if minid then redis.call('XTRIM', s, 'MINID', minid) end
  end
end

local most = tonumber(ARGV[6])
for _, idx in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local gone, live = 0, false
  while not live and gone < most do
    local ids = redis.call('ZRANGE', idx, 0, 15)
    if #ids == 0 then
      redis.call('SREM', KEYS[5], idx)
      break
    end
    for _, id in ipairs(ids) do
      if redis.call('EXISTS', ARGV[5] .. 'run:' .. id) == 1 then
        live = true
        break
      end
      redis.call('ZREM', idx, id)
      gone = gone + 1
    end
  end
end
return { redis.call('EXISTS', KEYS[4]), cancels }
