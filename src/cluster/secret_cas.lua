-- secret_cas: a sealed box replaced by another only if it is still the one
-- the caller read (docs/secrets.md "Rotating the key": the rotation's
-- re-seal and its key check swap; a set meanwhile is never overwritten).
-- KEYS: sec:<tenant> (hash) with ARGV[1] its field, or seckey (a string)
--       with ARGV[1] ''.
-- ARGV: field, the box expected, the new box.
-- Returns 1 replaced, 0 not (changed or removed meanwhile).
local cur
if ARGV[1] == '' then
  cur = redis.call('GET', KEYS[1])
else
  cur = redis.call('HGET', KEYS[1], ARGV[1])
end
if cur ~= ARGV[2] then return 0 end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
