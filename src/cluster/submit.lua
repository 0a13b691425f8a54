-- submit: the record (status queued) and its stream entry, together.
-- Placement (affinity): when the run names an environment (ARGV[5]) that
-- some live node holds warm (zset <prefix>warm:<env>, node -> until_ms,
-- written by finish.lua) and that node's own stream holds fewer entries
-- than it has slots, the entry goes to that node's stream
-- (<prefix>runs:<node>); else to the shared stream. An entry left
-- undelivered on a node's stream past the affinity delay is moved to the
-- shared stream by any other node (reclaim.lua): the bounded fallback.
-- KEYS: run:<id>, runs, idem:<tenant>:<key> (or unused), idx:<tenant>, tenants
-- (the set of listing indexes the lease script trims), fidx:<tenant>:<fn>
-- (the deployed function's own listing index, or unused), ridx:<tenant> (the
-- tenant's ids in id order, all scored 0: a prefix of an id is a ZRANGEBYLEX;
-- ids begin with their creation time, so its first members are its oldest and
-- the lease script trims it as it trims idx), queued:<tenant> (the tenant's
-- queued runs in the whole cluster: queued.lua)
-- ARGV: id, has_idem ('1'/'0'), idem_ttl_s, created, env, prefix, max_queued (the tenant's share of the queue:
-- a new run is refused while it has that many queued; '' none), has_fn ('1'/'0'), field, value, ...
-- Returns {0, id} for a new run, {1, id} for one that exists already (an
-- idempotent resubmission, or a retried submit whose first try landed),
-- {2, id} for a run refused, the tenant's share being full: nothing written.
if ARGV[2] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return {1, prev} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, ARGV[1]} end
-- The tenant's share of the queue, counted over every gateway's submits: a
-- gateway's own count let a tenant queue its share through each gateway.
-- Before refusing, members that are not queued runs any more (left behind
-- by a node of an older release, a record deleted) are dropped: all of them
-- up to 100, else 100 picked at random, so a refused tenant's retries find
-- any left behind, and a leaked count refuses nobody for good.
local cap = tonumber(ARGV[7])
if cap then
  local n = redis.call('ZCARD', KEYS[8])
  if n >= cap then
    for _, id in ipairs(redis.call('ZRANDMEMBER', KEYS[8], 100)) do
      if redis.call('HGET', ARGV[6] .. 'run:' .. id, 'status') ~= 'queued' then
        redis.call('ZREM', KEYS[8], id)
        n = n - 1
      end
    end
    if n >= cap then return {2, ARGV[1]} end
  end
end
local fv = {}
for i = 9, #ARGV do fv[#fv + 1] = ARGV[i] end
local stream = KEYS[2]
if ARGV[5] ~= '' then
  local wk = ARGV[6] .. 'warm:' .. ARGV[5]
  -- Expired hints by Redis's clock, the one finish.lua wrote them with: a
  -- gateway's own clock minutes off dropped every live hint, or kept dead
  -- ones (the gateway's clock is not sent).
  local t = redis.call('TIME')
  redis.call('ZREMRANGEBYSCORE', wk, '-inf', '(' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  local best, bestq = nil, nil
  for _, node in ipairs(redis.call('ZRANGE', wk, 0, -1)) do
    local lease = redis.call('GET', ARGV[6] .. 'node:' .. node)
    if lease then
      local ok, st = pcall(cjson.decode, lease)
      local slots = ok and tonumber(st.slots) or 0
      local sk = ARGV[6] .. 'runs:' .. node
      local q = redis.call('XLEN', sk)
      if ok and not st.draining and redis.call('EXISTS', ARGV[6] .. 'drain:' .. node) == 0 and q < slots and
         (bestq == nil or q < bestq) then
        best, bestq = sk, q
      end
    end
  end
  if best then stream = best end
  fv[#fv + 1] = 'env'
  fv[#fv + 1] = ARGV[5]
end
-- The entry first, so the record is one HSET (a script is atomic: no reader
-- sees the entry before its record). It also carries what a claim starts a
-- run from (cluster-redis.c entry_pending()), so the claiming node need not
-- read the record back: one round trip fewer per run. An entry written
-- again (requeue, reclaim) holds the id alone and its claim reads the record.
local ef = { 'id', ARGV[1] }
for i = 1, #fv - 1, 2 do
  local f = fv[i]
  if f == 'tenant' or f == 'request_json' or f == 'max_attempts' or f == 'created' then
    ef[#ef + 1] = f
    ef[#ef + 1] = fv[i + 1]
  end
end
local e = redis.call('XADD', stream, '*', unpack(ef))
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt', 0, 'entry', e, 'stream', stream, unpack(fv))
if ARGV[2] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3]) end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[7], 0, ARGV[1])
redis.call('ZADD', KEYS[8], ARGV[4], ARGV[1])
if ARGV[8] == '1' then
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
  redis.call('SADD', KEYS[5], KEYS[4], KEYS[7], KEYS[6])
else
  redis.call('SADD', KEYS[5], KEYS[4], KEYS[7])
end
return {0, ARGV[1]}
