-- search: one chunk of a filtered listing of a tenant's runs (GET
-- /v1/runs?q=TEXT, status=, function=, schedule=, before=), walked in
-- Redis over the tenant's whole index (idx:<tenant>), newest first, a
-- chunk of ARGV[2] ranks per call so that Redis is never held long; the
-- gateway asks chunk after chunk until its page is full or the index
-- ends. Only the fields that decide are read (HMGET), and only the ids
-- that match go back: the gateway reads those records whole and checks
-- them again (run_filter_match()). TEXT is matched as the store matches
-- it (strcasestr in the C locale): ASCII letters in either case — the
-- gateway sends it lowered, and Lua's string.lower folds ASCII only in
-- Redis's C locale. Before, a cluster looked among the tenant's newest
-- 10000 runs only: an older run was never found.
-- KEYS: idx:<tenant>
-- ARGV: prefix, count, start rank, text lowered ('' none), fn_name ('' none),
--       schedule ('' none), then the statuses (none: any)
-- Returns {the next chunk's rank (-1: the index ended), matching ids...}
local count = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
local ids = redis.call('ZREVRANGE', KEYS[1], start, start + count - 1)
local want = {}
local any = #ARGV < 7
for i = 7, #ARGV do want[ARGV[i]] = true end
local out = { #ids < count and -1 or start + count }
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. 'run:' .. id, 'status', 'fn_name', 'schedule', 'filename', 'function')
  local ok = f[1] and (any or want[f[1]])
  if ok and ARGV[5] ~= '' then ok = f[2] == ARGV[5] end
  if ok and ARGV[6] ~= '' then ok = f[3] == ARGV[6] end
  if ok and ARGV[4] ~= '' then
    ok = false
    for _, v in ipairs({ id, f[4], f[5], f[2], f[3] }) do
      if v and string.find(string.lower(v), ARGV[4], 1, true) then ok = true break end
    end
  end
  if ok then out[#out + 1] = id end
end
return out
