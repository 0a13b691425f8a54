-- submit: the record (status queued) and its stream entry, together.
-- KEYS: run:<id>, runs, idem:<tenant>:<key> (or unused), idx:<tenant>, tenants
-- (the set of tenants whose idx the lease script trims)
-- ARGV: id, has_idem ('1'/'0'), idem_ttl_s, created, field, value, ...
-- Returns {0, id} for a new run, {1, id} for one that exists already (an
-- idempotent resubmission, or a retried submit whose first try landed).
if ARGV[2] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return {1, prev} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, ARGV[1]} end
local fv = {}
for i = 5, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt', 0, unpack(fv))
local e = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', e)
if ARGV[2] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3]) end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], KEYS[4])
return {0, ARGV[1]}
