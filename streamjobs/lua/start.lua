--[[ start: take up to `count` new jobs for a consumer, highest priority first, and mark them
RUNNING. Invariant: a lower stream is read only when every higher one had nothing new.
ARGV 4 consumer (pool id), 5 count, 6... pairs of stream index (1-4) and entry id already
delivered to this consumer by a blocking read; they are started first.
Returns a list of {stream index, entry id, flat job record}.
Events: job.started per job; job.dead_letter for entries that are not jobs of ours.
]]
local owner, count = ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local started = {}

local function take(index, entry, fields)
  local job = start_entry(index, entry, fields, owner, now)
  if job then started[#started + 1] = job end
end

for i = 6, #ARGV, 2 do
  local index, entry = tonumber(ARGV[i]), ARGV[i + 1]
  local e = redis.call('XRANGE', STREAMS[index], entry, entry)
  if e[1] then take(index, entry, e[1][2]) else redis.call('XACK', STREAMS[index], GROUP, entry) end
end
for index = 1, 4 do
  local want = count - #started
  if want <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, owner, 'COUNT', want,
                           'STREAMS', STREAMS[index], '>')
  if reply then
    for _, e in ipairs(reply[1][2]) do take(index, e[1], e[2]) end
  end
end
return started
