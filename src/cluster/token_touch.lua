-- token_touch: a use of token id, written at most once a minute (a busy
-- client must not turn every request into a write). KEYS: tokids.
-- ARGV: id, now (µs), the key prefix. Returns 1, or 0 when there is no
-- such id.
local sha = redis.call('HGET', KEYS[1], ARGV[1])
if not sha then return 0 end
local k = ARGV[3] .. 'tok:' .. sha
-- Expired meanwhile (token_put's PEXPIREAT): an HSET would make it again.
if redis.call('EXISTS', k) == 0 then return 0 end
local last = tonumber(redis.call('HGET', k, 'last_used') or '0') or 0
if last < tonumber(ARGV[2]) - 60000000 then redis.call('HSET', k, 'last_used', ARGV[2]) end
return 1
