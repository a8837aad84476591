--[[ events_per_minute: jobs completed and failed per minute since a given time, counted from
the events stream (reads only): the throughput chart's history where the dashboard has no
samples of its own yet (job.failed counts dead letters too, as the samples do).
ARGV 4 since (ms), 5 entries read at most.
Returns {time (ms) of the oldest event kept (-1: none), 1 when the stream is at its cap (older
events were trimmed) else 0, flat: minute, completed, failed, ...}.
]]
local since, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local first = redis.call('XRANGE', EVENTS, '-', '+', 'COUNT', 1)[1]
local oldest = first and tonumber(string.match(first[1], '^(%d+)')) or -1
local capped = 0
if EVENTS_MAXLEN > 0 and redis.call('XLEN', EVENTS) >= EVENTS_MAXLEN then capped = 1 end
local counts, minutes = {}, {}
local low, read = string.format('%d', since), 0
while read < budget do
  local entries = redis.call('XRANGE', EVENTS, low, '+', 'COUNT', math.min(1000, budget - read))
  for _, e in ipairs(entries) do
    local kind = field(e[2], 'type')
    if kind == 'job.completed' or kind == 'job.failed' then
      local minute = math.floor(tonumber(string.match(e[1], '^(%d+)')) / 60000)
      local c = counts[minute]
      if not c then
        c = {0, 0}
        counts[minute] = c
        minutes[#minutes + 1] = minute
      end
      if kind == 'job.completed' then c[1] = c[1] + 1 else c[2] = c[2] + 1 end
    end
  end
  read = read + #entries
  if #entries < 1000 then break end
  low = '(' .. entries[#entries][1]
end
local flat = {}
for _, minute in ipairs(minutes) do
  flat[#flat + 1] = string.format('%d', minute)
  flat[#flat + 1] = counts[minute][1]
  flat[#flat + 1] = counts[minute][2]
end
return {oldest, capped, flat}
