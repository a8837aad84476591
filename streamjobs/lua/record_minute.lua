--[[ record_minute: sample the lifetime completed and failed counters into the dashboard's
per-minute series (KEYS[14], a hash: minute number -> "completed failed" as counted at the
last sample in that minute), drop minutes older than the window, and return the series.
The series belongs to the dashboard: queue transitions never write it, so the hot path pays
nothing; every dashboard process samples the same counters into the same key.
ARGV 4 minutes kept.
Returns {now (ms), series flat: minute, "completed failed", ...}. Failed counts dead letters.
]]
local SERIES = KEYS[14]
local keep = tonumber(ARGV[4])
local now = now_ms()
local minute = math.floor(now / 60000)
local c = redis.call('HMGET', STATS, 'completed', 'failed', 'dead_lettered')
local failed = (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0)
redis.call('HSET', SERIES, string.format('%d', minute),
           (c[1] or '0') .. ' ' .. string.format('%d', failed))
local kept = {}
local series = redis.call('HGETALL', SERIES)
for i = 1, #series, 2 do
  if tonumber(series[i]) <= minute - keep then
    redis.call('HDEL', SERIES, series[i])
  else
    kept[#kept + 1] = series[i]
    kept[#kept + 1] = series[i + 1]
  end
end
return {now, kept}
