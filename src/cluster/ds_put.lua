-- ds_put: a dataset's description (not its versions), creating it.
-- KEYS: ds:<tenant>:<name>, dss:<tenant>   ARGV: name, created, then
-- field, value pairs (kind, source, etag, last_modified, checked); an
-- empty value removes the field.
redis.call('HSETNX', KEYS[1], 'created', ARGV[2])
redis.call('HSETNX', KEYS[1], 'current', '0')
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
