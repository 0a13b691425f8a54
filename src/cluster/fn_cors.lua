-- fn_cors: a function URL's CORS settings (docs/endpoints.md "CORS"), in
-- the function's hash beside its URL mode ('url'), removed with it.
-- KEYS: fn:<tenant>:<name>.  ARGV: Lambda's Cors object as JSON, '' removes.
-- Returns 1 done, 0 the function has no URL (settings are never kept
-- without one).
if redis.call('HEXISTS', KEYS[1], 'url') == 0 then
  return 0
end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'cors')
else
  redis.call('HSET', KEYS[1], 'cors', ARGV[1])
end
return 1
