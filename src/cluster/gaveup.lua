-- gaveup: this node, stopped past its drain, has stopped the run's
-- attempt with no end written (docs/cluster.md "A worker stopped"): the
-- record says so (gave_up = the attempt), and a cancel asked from now on
-- ends the run at once (cancel.lua) rather than at its reclaim, which only
-- a live worker makes once this node's lease expired. A cancel already
-- asked (its message missed this node as it stopped) ends it here.
-- KEYS: run:<id>, runs   ARGV: node, attempt, group, finished, ttl_s, prefix
-- Returns 1 marked, 2 ended cancelled, 0 not this node's attempt any more.
-- include run_cancelled.lua
local f = redis.call('HMGET', KEYS[1], 'status', 'node', 'attempt', 'cancel_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
if f[4] ~= '1' then
  redis.call('HSET', KEYS[1], 'gave_up', ARGV[2])
  return 1
end
run_cancelled(KEYS[1], KEYS[2], ARGV[3], 'the run was cancelled', ARGV[4], ARGV[5], ARGV[6])
return 2
