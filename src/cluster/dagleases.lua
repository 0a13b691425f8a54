-- A gateway's DAG leases, about once a second: it refreshes the owner
-- lease of every DAG run it drives (re-taking one that lapsed while nobody
-- took it), then, with take = 1, takes every running DAG run that has no
-- live owner (SET NX: one node wins). Returns {the ids taken (to resume),
-- the ids it drives or took whose cancel was asked on some gateway
-- (dagcancel.lua): the node cancels those as a local cancel would}.
-- KEYS: dags:running
-- ARGV: node, lease ttl ms, key prefix, take (1/0), then the ids it drives
-- A Redis that was down past the lease lifetime comes back with every
-- owner lease expired, the live owners' too: until it has been up for two
-- lease lifetimes (each live owner has refreshed its own by then, above),
-- nothing is taken, as reclaim.lua takes no other node's run. Before, the
-- first gateway to look took every DAG run the others still drove, and
-- they, fenced, answered their waiting clients with the DAG run unended.
-- A Redis (an ACL) that refuses INFO is taken as up for long.
local mine = {}
for i = 5, #ARGV do
  local k = ARGV[3] .. 'dagowner:' .. ARGV[i]
  mine[ARGV[i]] = true
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
  elseif redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    -- lapsed and nobody took it: still ours. One that ended (taken over
    -- and finished by another node meanwhile) is not taken back.
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2], 'NX')
  end
end
local taken = {}
local info = redis.pcall('INFO', 'server')
local up = type(info) == 'string' and tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or nil
local restarted = up ~= nil and up * 1000 < 2 * tonumber(ARGV[2])
if ARGV[4] == '1' and not restarted then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if not mine[id] then
      if redis.call('EXISTS', ARGV[3] .. 'dag:' .. id) == 0 then
        redis.call('SREM', KEYS[1], id)
      elseif redis.call('SET', ARGV[3] .. 'dagowner:' .. id, ARGV[1], 'PX', ARGV[2], 'NX') then
        table.insert(taken, id)
      end
    end
  end
end
local cancel = {}
for id, _ in pairs(mine) do
  if redis.call('HEXISTS', ARGV[3] .. 'dag:' .. id, 'cancel') == 1 then table.insert(cancel, id) end
end
for _, id in ipairs(taken) do
  if redis.call('HEXISTS', ARGV[3] .. 'dag:' .. id, 'cancel') == 1 then table.insert(cancel, id) end
end
return {taken, cancel}
