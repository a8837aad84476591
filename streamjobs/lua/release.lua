--[[ release: hand back entries a consumer holds, at once (no waiting for a lease to lapse):
each goes to the tail of its stream, PENDING, its interrupted attempt not counted. With no
entries named, every entry the consumer holds goes back and the consumer leaves the groups
(a stopping pool); with entries named, only those (a pool passing on jobs it won't run).
Invariant: an entry leaves this consumer in the same step that queues it again.
ARGV 4 consumer, 5... optional pairs of stream index and entry id.
Returns the number of jobs handed back.
Events: job.requeued per job; one ready token per job handed back.
]]
local owner = ARGV[4]
local now = now_ms()
local handed, complete = 0, true

local function hand_back(stream, entry)
  local e = redis.call('XRANGE', stream, entry, entry)
  if not e[1] then
    redis.call('XACK', stream, GROUP, entry)
    return
  end
  local job_id = field(e[1][2], 'id')
  if not job_id then
    bury_raw(stream, entry, e[1][2], 'undecodable entry: it carries no job id', now)
    return
  end
  local key = JOB_PREFIX .. job_id
  local s = redis.call('HMGET', key, 'status', 'entry', 'owner', 'priority')
  drop_entry(stream, entry)
  if s[2] ~= entry then return end
  if s[1] == 'RUNNING' and s[3] == owner then
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HDEL', key, 'owner', 'started_at')
    limit_release(key, job_id)
  elseif s[1] ~= 'PENDING' then
    return
  end
  push(key, job_id, s[4])
  emit('job.requeued', job_id, now, {'reason', 'handed back by its worker'})
  handed = handed + 1
end

if #ARGV >= 5 then
  for i = 5, #ARGV, 2 do
    local stream, entry = STREAMS[tonumber(ARGV[i])], ARGV[i + 1]
    local p = redis.call('XPENDING', stream, GROUP, entry, entry, 1)
    if p[1] and p[1][2] == owner then hand_back(stream, entry) end
  end
  signal_ready(handed)
  return handed
end
for index = 1, 4 do
  local held = redis.call('XPENDING', STREAMS[index], GROUP, '-', '+', 1000, owner)
  for _, p in ipairs(held) do hand_back(STREAMS[index], p[1]) end
  if #held >= 1000 then complete = false end
end
if complete then
  for index = 1, 4 do redis.call('XGROUP', 'DELCONSUMER', STREAMS[index], GROUP, owner) end
end
signal_ready(handed)
return handed
