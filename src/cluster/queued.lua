-- queued: a tenant's runs queued in the whole cluster, the zset
-- <prefix>queued:<tenant> (members run ids, scored by their creation time),
-- which submit.lua counts against the tenant's share of the queue
-- (server.max_queued_per_tenant, docs/cluster.md "A tenant's share of the
-- queue"). A run enters it where its record becomes queued (submit, and
-- reclaim's queued again) and leaves it where its record stops being queued
-- (start, finish, cancel, gaveup, reclaim's ends); handback and requeue
-- move a queued run's entry only. A member left behind (a node of an older
-- release, a record deleted by hand) is dropped by submit.lua once the
-- share looks full: the count never refuses a tenant for good.
-- Not a script of its own: the scripts include it (embed.py pastes it in
-- place of their "-- include queued.lua" line). key is the run's record.
local function queued_set(prefix, key, enter)
  local f = redis.call('HMGET', key, 'tenant', 'id', 'created')
  if not f[1] or not f[2] then return end
  local k = prefix .. 'queued:' .. f[1]
  if enter then
    redis.call('ZADD', k, 'NX', tonumber(f[3]) or 0, f[2])
  else
    redis.call('ZREM', k, f[2])
  end
end
