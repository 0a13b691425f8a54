-- finish: the result, only from the current attempt of a run not ended;
-- then the entry is acknowledged and deleted (the streams only hold work
-- in flight), the record expires, the gateway that waits for the run
-- hears it on its channel (PUBLISH <prefix>ev:<gateway> "r:<id>\n" and the
-- record, or "d:<id>" for a big one: below), and
-- this node is noted warm for the run's environment (placement hint,
-- submit.lua). Else the late result is counted.
-- The run's lock (ARGV[8]: the packages it ran with, pkg_lock_to_json()
-- text; '' none) is kept once per distinct text, as a single node's locks
-- table does (a deployed function's invokes all carry its version's lock):
-- the record names it by its SHA-1 (field lock_sha1), the text is
-- <prefix>runlock:<sha1>, whose expiry each finish that names it pushes to
-- its own record's, so it outlives every record naming it (all expire
-- ttl_s after their end). An existing text is not written again (its AOF
-- entry is an EXPIRE).
-- The last of the run's log comes with it (ARGV[11 .. 10 + ARGV[10]], (kind,
-- data, time) triples as log_append.lua's, the end marker last) and goes in first,
-- also when the result is stale (a log holds what every attempt printed;
-- a stale one's without its end marker):
-- a reader that sees the run ended has its whole log, and a run's end is
-- one script call, not two.
-- KEYS: run:<id>, runs, stale, log:<id>
-- ARGV: attempt, group, ttl_s, prefix, node, (unused: was now_ms), warm_ms, lock, log_maxlen, nlog, nlog log
-- arguments, then field, value, ...
-- The fields (cluster-redis.c cq_finish): function, status, exit_code,
-- value_json, value_repr, error_type, error_message, traceback,
-- timings_json, outputs_json ({"NAME": VERSION}, the datasets the run
-- wrote), log_path, started, finished; an absent one is not sent.
-- A run that ends here leaves its tenant's queued runs (queued.lua): a
-- queued one whose request no node can read ends so.
-- Returns 1 written, 0 stale.
-- include log_add.lua
-- include queued.lua
-- One read of what the script needs (the HSET below writes none of these).
local h = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'entry', 'stream', 'env', 'gateway', 'id', 'ended_by',
  'gateway_reads')
local st, a = h[1], h[2]
local nlog = tonumber(ARGV[10])
-- ended_by: the attempt whose finish wrote the end. The same finish asked
-- again (its answer was lost) finds its own end: its log is in already.
local stale = (st ~= 'queued' and st ~= 'running') or a ~= ARGV[1]
-- A stale attempt's output stays in the log, but not its end marker:
-- readers stop at the first end, and the attempt that won (another node's,
-- still running or ended) would lose the rest of its output after it.
local last = 10 + nlog
if stale and nlog >= 3 and ARGV[last - 2] == 'end' then last = last - 3 end
if h[8] ~= ARGV[1] then log_add(KEYS[4], ARGV[9], ARGV[3], 11, last) end
if stale then
  redis.call('INCR', KEYS[3])
  return 0
end
local fv = {}
for i = 11 + nlog, #ARGV do fv[#fv + 1] = ARGV[i] end
fv[#fv + 1] = 'ended_by'
fv[#fv + 1] = ARGV[1]
if ARGV[8] ~= '' then
  local h = redis.sha1hex(ARGV[8])
  local lk = ARGV[4] .. 'runlock:' .. h
  if redis.call('EXPIRE', lk, ARGV[3]) == 0 then redis.call('SET', lk, ARGV[8], 'EX', ARGV[3]) end
  fv[#fv + 1] = 'lock_sha1'
  fv[#fv + 1] = h
end
redis.call('HSET', KEYS[1], unpack(fv))
redis.call('HDEL', KEYS[1], 'request_json')
if st == 'queued' then queued_set(ARGV[4], KEYS[1], false) end
local e = h[3]
if e then
  local s = h[4] or KEYS[2]
  redis.call('XACK', s, ARGV[2], e)
  redis.call('XDEL', s, e)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local env = h[5]
if env then
  local wk = ARGV[4] .. 'warm:' .. env
  -- Redis's clock, as submit.lua's look at the hints: nodes' clocks may
  -- differ by minutes (ARGV[6], the node's, is no longer read).
  local t = redis.call('TIME')
  redis.call('ZADD', wk, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[7]), ARGV[5])
  redis.call('PEXPIRE', wk, ARGV[7])
end
local gw = h[6]
-- A gateway of a release before round 26 reads "d:<id>" only (an "r:"
-- message it ignores, and answers from its once-a-second look): the
-- record form goes to a gateway whose submit said it reads it
-- (gateway_reads = 'r', cluster-redis.c), so a rolling upgrade's newer
-- workers tell older gateways at once.
if gw and h[9] ~= 'r' then
  redis.call('PUBLISH', ARGV[4] .. 'ev:' .. gw, 'd:' .. h[7])
elseif gw then
  -- The ended record rides with the message ("r:<id>\n", then each field
  -- and value as "<len>:<bytes>"): the gateway answers from it instead of
  -- reading it back, one round trip fewer per run. Only a small one: a
  -- subscriber whose pending messages pass Redis's pubsub buffer limit is
  -- cut off, so a big result goes as "d:<id>" and is read.
  local all = redis.call('HGETALL', KEYS[1])
  local parts, size = { 'r:' .. h[7] .. '\n' }, 0
  for i = 1, #all do
    size = size + #all[i]
    parts[#parts + 1] = #all[i] .. ':' .. all[i]
  end
  if size <= 65536 then
    redis.call('PUBLISH', ARGV[4] .. 'ev:' .. gw, table.concat(parts))
  else
    redis.call('PUBLISH', ARGV[4] .. 'ev:' .. gw, 'd:' .. h[7])
  end
end
return 1
