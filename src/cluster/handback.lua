-- handback: a run this node claimed but may not start now, its tenant
-- being at this node's max_concurrent_per_tenant, goes back to the end of
-- the shared stream, still queued, where a node with room for the tenant
-- takes it (kept, it would wait here while another node sat idle). Its
-- entry is found from the record (the stream it was read from: the
-- shared one, or this node's own when placed here). Nothing else changes:
-- it never started, so its attempt stays.
-- KEYS: run:<id>, runs (shared)   ARGV: group, id
-- Returns 1 handed back, 0 not queued any more (cancelled meanwhile: its
-- entry is acknowledged and gone).
local f = redis.call('HMGET', KEYS[1], 'status', 'stream', 'entry')
if f[2] and f[3] then
  redis.call('XACK', f[2], ARGV[1], f[3])
  redis.call('XDEL', f[2], f[3])
end
if f[1] ~= 'queued' then return 0 end
local e = redis.call('XADD', KEYS[2], '*', 'id', ARGV[2])
redis.call('HSET', KEYS[1], 'entry', e, 'stream', KEYS[2])
return 1
