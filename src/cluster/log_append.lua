-- log_append: a batch of a run's log entries, in order, in one round trip:
-- one stream entry (log_add.lua). A trivial run's flush (its phases and the
-- end) is one XADD, not six. The stream lives as long as an ended record.
-- (A run's last flush goes with its end instead: finish.lua.)
-- KEYS: log:<id>   ARGV: maxlen, ttl_s, kind, data, time, kind, data, time, ...
-- kind: "1" stdout, "2" stderr, "p" a phase (data: its name), "end" the
-- run's last entry (written before its final record).
-- include log_add.lua
log_add(KEYS[1], ARGV[1], ARGV[2], 3, #ARGV)
return 1
