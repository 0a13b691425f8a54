-- requeue: an entry this node read but has no slot for (a claim that read
-- both its own stream and the shared one got more than its free slots)
-- goes back to the end of the shared stream, its run still queued.
-- KEYS: the stream it was read from, runs (shared), run:<id>
-- ARGV: group, entry id, id
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[3], 'status') == 'queued' then
  local e = redis.call('XADD', KEYS[2], '*', 'id', ARGV[3])
  redis.call('HSET', KEYS[3], 'entry', e, 'stream', KEYS[2])
end
return 1
