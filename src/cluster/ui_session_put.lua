-- ui_session_put: a dashboard session (docs/cluster.md "Dashboard
-- sessions"): uis:<sha256 of its id> holds the sha256 of the token it was
-- made from and expires with it; uistok:<token sha256> (zset: session id
-- hash -> expiry ms) caps the token's sessions: a token at the cap drops
-- its own session closest to expiry, never another token's.
-- KEYS: uis:<id hash>, uistok:<token hash>
-- ARGV: id hash, token hash, now ms, ttl ms, the cap, the key prefix ('ps:')
-- Returns 1.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local n = redis.call('ZCARD', KEYS[2])
while n >= tonumber(ARGV[5]) do
  local old = redis.call('ZPOPMIN', KEYS[2])
  if not old[1] then break end
  redis.call('DEL', ARGV[6] .. 'uis:' .. old[1])
  n = n - 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
