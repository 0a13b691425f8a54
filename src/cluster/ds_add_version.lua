-- ds_add_version: content hash as a version of a dataset, made current:
-- an existing version with that hash is reused, else the next number is
-- taken and the hash's reference count goes up. The next number is past
-- every number the name ever had (dslast keeps the highest, which
-- ds_delete.lua leaves alone): a removed version's number is never handed
-- out again, so NAME@N names one content for good (store-data.c's rule).
-- KEYS: ds:<tenant>:<name>, dsrefs, dslast
-- ARGV: hash, size, files, created, <tenant>/<name>
-- Returns {version, 1 new | 0 reused}, or {-1} when the dataset does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local all = redis.call('HGETALL', KEYS[1])
local top = 0
for i = 1, #all, 2 do
  local v = string.match(all[i], '^v:(%d+)$')
  if v then
    v = tonumber(v)
    if v > top then top = v end
    if string.sub(all[i + 1], 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
      redis.call('HSET', KEYS[1], 'current', v)
      return {v, 0}
    end
  end
end
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
local n = math.max(top, last) + 1
redis.call('HSET', KEYS[3], ARGV[5], n)
redis.call('HSET', KEYS[1], 'v:' .. n, ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4], 'current', n)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return {n, 1}
