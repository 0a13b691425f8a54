-- ui_session_del: a dashboard session ended (a logout): its key and its
-- entry in the token's set (ui_session_put.lua).
-- KEYS: uis:<id hash>. ARGV: id hash, the key prefix ('ps:').
-- Returns 1, or 0 when there was no such session (expired, or ended).
local tok = redis.call('GET', KEYS[1])
if not tok then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[2] .. 'uistok:' .. tok, ARGV[1])
return 1
