--[[ start: take up to `count` new jobs for a consumer, highest priority first, and mark them
RUNNING. Invariant: a lower stream is read only when every higher one had nothing new.
ARGV 4 consumer (pool id), 5 count, 6 the consumer's lease (ms), recorded in each job started
(`lease`) as that job's own: 0 records none; 7 (optional, default 4) the lowest-priority stream
to read: a worker reading many partitions reads each only down to the best priority waiting
in any of them (see ready_level.lua).
Returns a list of {stream index, entry id, flat job record}.
When every stream was read (to its end) and no new entry is left, the ready tokens are stale (each stood
for an entry now delivered): they are cleared, so that idle readers block until the next.
A keyed job started lets its key's next job into the stream (fair_left): the stream is read
again for those, a bounded number of times; those left unread get a ready token each.
Jobs whose key's limit has no room are parked (limit_admit), not started.
Events: job.started per job; job.limited per job parked; job.dead_letter for entries that
are not jobs of ours.
]]
local owner, count, lease_ms = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local lowest = tonumber(ARGV[7]) or 4
local now = now_ms()
local started = {}
local READS = 32  -- most reads of one stream per call (keyed jobs let in as others start)

local drained = lowest == 4  -- every stream was read to its end
for index = 1, lowest do
  local reads, fed = 0, fair_state.fed
  repeat
    local want = count - #started
    if want <= 0 then break end
    fed = fair_state.fed
    local reply = redis.call('XREADGROUP', 'GROUP', GROUP, owner, 'COUNT', want,
                             'STREAMS', STREAMS[index], '>')
    local entries = reply and reply[1][2] or {}
    if #entries == want then drained = false end
    for _, e in ipairs(entries) do
      local job = start_entry(index, e[1], e[2], owner, now, lease_ms)
      if job then started[#started + 1] = job end
    end
    reads = reads + 1
  until fair_state.fed == fed or reads >= READS
  if fair_state.fed ~= fed then drained = false end  -- let in after its last read
  if count - #started <= 0 then break end
end
if count - #started <= 0 then drained = false end
if drained then
  redis.call('DEL', READY)
else
  signal_ready(fair_state.fed)
end
return started
