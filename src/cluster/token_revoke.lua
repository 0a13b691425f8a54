-- token_revoke: a token by its whole id. KEYS: tokids. ARGV: id, the key
-- prefix ('ps:'). Returns 1, or 0 when there is no such id.
local sha = redis.call('HGET', KEYS[1], ARGV[1])
if not sha then return 0 end
redis.call('DEL', ARGV[2] .. 'tok:' .. sha)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
