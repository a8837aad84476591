--[[ job_events: the events of one job still in the events stream, newest first (reads only).
Filtered in Redis: the dashboard's job page gets a handful of entries, not the whole stream.
ARGV 4 job id, 5 entries read at most.
Returns {entry id, flat fields} per event of the job.
]]
local job_id, budget = ARGV[4], tonumber(ARGV[5])
local found = {}
local top, read = '+', 0
while read < budget do
  local entries = redis.call('XREVRANGE', EVENTS, top, '-', 'COUNT', math.min(1000, budget - read))
  for _, e in ipairs(entries) do
    if field(e[2], 'job_id') == job_id then found[#found + 1] = e end
  end
  read = read + #entries
  if #entries < 1000 then break end
  top = '(' .. entries[#entries][1]
end
return found
