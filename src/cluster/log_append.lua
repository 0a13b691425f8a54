-- log_append: a batch of a run's log entries, in order, in one round trip;
-- the stream is capped (MAXLEN ~) and lives as long as an ended record.
-- KEYS: log:<id>   ARGV: maxlen, ttl_s, kind, data, kind, data, ...
-- kind: "1" stdout, "2" stderr, "p" a phase (data: its name), "end" the
-- run's last entry (written before its final record).
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[i], 'd', ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
