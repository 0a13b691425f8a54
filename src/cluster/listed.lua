-- listed: run records as a listing shows them (GET /v1/runs, a function's
-- runs, `ps`), a page in one call. A listing's run object holds args,
-- kwargs, result, result_repr and the error's message and traceback only
-- when their text is at most ARGV[2] bytes (RUN_LIST_VALUE_MAX, as the
-- SQLite store's listing reads them): a longer value is not read here at
-- all. Before, a gateway read each record whole, one HGETALL per run in
-- turn: a page of 20 runs with 10 MB results moved 200 MB from Redis to
-- list them, and 20 round trips.
-- KEYS: none (the records' keys are ARGV[1] .. 'run:' .. id)
-- ARGV: prefix, the longest value read, the tenant, then the ids
-- Returns one reply per id: {} when there is no record or it is another
-- tenant's, else {mask of the values left out (bit i: elided[i]), name,
-- value, name, value, ...}
local elided = { 'args_json', 'kwargs_json', 'value_json', 'value_repr', 'error_message', 'traceback' }
local max = tonumber(ARGV[2])
local out = {}
for i = 4, #ARGV do
  local key = ARGV[1] .. 'run:' .. ARGV[i]
  local rec = {}
  if redis.call('HGET', key, 'tenant') == ARGV[3] then
    local skip, mask = {}, 0
    for bit, name in ipairs(elided) do
      if redis.call('HSTRLEN', key, name) > max then
        skip[name] = true
        mask = mask + 2 ^ (bit - 1)
      end
    end
    rec[1] = mask
    for _, name in ipairs(redis.call('HKEYS', key)) do
      if not skip[name] then
        rec[#rec + 1] = name
        rec[#rec + 1] = redis.call('HGET', key, name)
      end
    end
  end
  out[#out + 1] = rec
end
return out
