-- log_append: a batch of a run's log entries, in order, in one round trip,
-- as one stream entry whose field pairs are the batch's entries in order
-- (k kind, d data, k kind, d data, ...: a stream entry's fields are a list,
-- a name may repeat; cluster-logs.c reads each pair as one log entry). A
-- trivial run's flush (its phases and the end) is one XADD, not six. Very
-- large batches are split every 1000 entries (Lua's unpack() limit). The
-- stream is capped (MAXLEN ~, in batches) and lives as long as an ended
-- record.
-- KEYS: log:<id>   ARGV: maxlen, ttl_s, kind, data, kind, data, ...
-- kind: "1" stdout, "2" stderr, "p" a phase (data: its name), "end" the
-- run's last entry (written before its final record).
local fv = {}
for i = 3, #ARGV, 2 do
  fv[#fv + 1] = 'k'
  fv[#fv + 1] = ARGV[i]
  fv[#fv + 1] = 'd'
  fv[#fv + 1] = ARGV[i + 1]
  if #fv >= 4000 or i + 2 > #ARGV then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fv))
    fv = {}
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
