-- log_add: appends ARGV[from..to], (kind, data) pairs, to the run log stream
-- key as one stream entry whose field pairs are the log entries in order
-- (k kind, d data, k kind, d data, ...: a stream entry's fields are a list,
-- a name may repeat; cluster-logs.c reads each pair as one log entry), split
-- every 1000 log entries (Lua's unpack() limit); the stream is capped
-- (MAXLEN ~ maxlen stream entries) and its expiry renewed to ttl_s.
-- Not a script of its own: log_append.lua and finish.lua include it
-- (embed.py pastes it in place of their "-- include log_add.lua" line).
local function log_add(key, maxlen, ttl_s, from, to)
  if to < from then return end
  local fv = {}
  for i = from, to, 2 do
    fv[#fv + 1] = 'k'
    fv[#fv + 1] = ARGV[i]
    fv[#fv + 1] = 'd'
    fv[#fv + 1] = ARGV[i + 1]
    if #fv >= 4000 or i + 2 > to then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', unpack(fv))
      fv = {}
    end
  end
  redis.call('EXPIRE', key, ttl_s)
end
