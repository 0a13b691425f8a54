-- ds_delete: one version (ARGV[2] > 0) or the whole dataset (0); when the
-- current version goes, the newest remaining becomes current (0: none).
-- KEYS: ds:<tenant>:<name>, dss:<tenant>, dsrefs   ARGV: name, version
-- Returns 1, or 0 when there is no such dataset or version.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function unref(value)
  local h = string.match(value, '^(%S+)')
  if h and redis.call('HINCRBY', KEYS[3], h, -1) <= 0 then redis.call('HDEL', KEYS[3], h) end
end
local all = redis.call('HGETALL', KEYS[1])
if ARGV[2] == '0' then
  for i = 1, #all, 2 do
    if string.match(all[i], '^v:%d+$') then unref(all[i + 1]) end
  end
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
local field = 'v:' .. ARGV[2]
local value = redis.call('HGET', KEYS[1], field)
if not value then return 0 end
redis.call('HDEL', KEYS[1], field)
unref(value)
if redis.call('HGET', KEYS[1], 'current') == ARGV[2] then
  local top = 0
  for i = 1, #all, 2 do
    local v = string.match(all[i], '^v:(%d+)$')
    if v and all[i] ~= field and tonumber(v) > top then top = tonumber(v) end
  end
  redis.call('HSET', KEYS[1], 'current', top)
end
return 1
