-- lease: this node is alive (a TTL'd key holding its status) and still
-- works on its pending entries (re-claimed to itself, which resets their
-- idle time, so only a dead or stopped node's entries ever look idle).
-- KEYS: node:<id>, runs, nodes, drain:<id>
-- ARGV: ttl_ms, status_json, group, node_id
-- Returns 1 when the node was asked to drain.
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
local p = redis.call('XPENDING', KEYS[2], ARGV[3], '-', '+', 1000, ARGV[4])
if #p > 0 then
  local args = {}
  for i, e in ipairs(p) do args[i] = e[1] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, unpack(args))
end
return redis.call('EXISTS', KEYS[4])
