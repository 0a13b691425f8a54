-- fn_url: a deployed function's URL mode, in its hash beside its versions
-- (fn_put keeps it across versions, fn_delete's DEL removes it); its CORS
-- settings (fn_cors.lua) go with it.
-- KEYS: fn:<tenant>:<name>.  ARGV: mode (1 token, 2 public, 0 removes).
-- Returns 1 done, 0 no such function (a URL is not given to a function a
-- delete just removed: the field would revive a hash without versions).
if ARGV[1] == '0' then
  redis.call('HDEL', KEYS[1], 'url', 'cors')
  return 1
end
if redis.call('HEXISTS', KEYS[1], 'next') == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'url', ARGV[1])
return 1
