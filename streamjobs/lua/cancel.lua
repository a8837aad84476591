--[[ cancel: withdraw a job that has not started (pending, scheduled or waiting to retry).
Invariant: a cancelled job leaves its stream or the delayed set in the same step.
ARGV 4 job id.
Returns 1 when cancelled, 0 when it is running or already terminal, -1 when unknown.
Events: job.cancelled.
]]
local job_id = ARGV[4]
local key = JOB_PREFIX .. job_id
local s = redis.call('HMGET', key, 'status', 'entry', 'priority')
if not s[1] then return -1 end
if s[1] == 'PENDING' then
  drop_entry(stream_of(s[3]), s[2])
elseif s[1] == 'SCHEDULED' or s[1] == 'RETRYING' then
  redis.call('ZREM', DELAYED, job_id)
  if s[1] == 'RETRYING' then redis.call('HINCRBY', STATS, 'retrying', -1) end
else
  return 0
end
local now = now_ms()
finish(key, 'CANCELLED', now)
redis.call('HINCRBY', STATS, 'cancelled', 1)
emit('job.cancelled', job_id, now, {'from', s[1]})
return 1
