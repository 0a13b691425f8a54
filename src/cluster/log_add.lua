-- log_add: appends ARGV[from..to], (kind, data, time) triples, to the run log
-- stream key as one stream entry whose fields are the log entries in order
-- (k kind, d data, t time, k kind, ...: a stream entry's fields are a list,
-- a name may repeat; cluster-logs.c reads each triple as one log entry; t,
-- realtime microseconds when the run wrote it, is skipped by a reader older
-- than it), split every 1000 log entries (Lua's unpack() limit); the stream is capped
-- (MAXLEN ~ maxlen stream entries) and its expiry renewed to ttl_s.
-- Not a script of its own: log_append.lua and finish.lua include it
-- (embed.py pastes it in place of their "-- include log_add.lua" line).
local function log_add(key, maxlen, ttl_s, from, to)
  if to < from then return end
  local fv = {}
  for i = from, to, 3 do
    fv[#fv + 1] = 'k'
    fv[#fv + 1] = ARGV[i]
    fv[#fv + 1] = 'd'
    fv[#fv + 1] = ARGV[i + 1]
    fv[#fv + 1] = 't'
    fv[#fv + 1] = ARGV[i + 2]
    if #fv >= 6000 or i + 3 > to then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', unpack(fv))
      fv = {}
    end
  end
  redis.call('EXPIRE', key, ttl_s)
end
