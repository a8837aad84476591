--[[ promote: move due jobs from the delayed set into their priority streams, and jobs parked
under a rate limit back to theirs once its window opens (LIMITS_DUE, see limit_resume).
Invariant: a job leaves the delayed set (or its key's waiting list) in the same step that
queues it, so any number of promoters may run at once without losing or doubling a job.
ARGV 4 most jobs to move in one call.
Returns ms until the next delayed job (or rate window) is due: 0 when more are due now, -1
when none wait.
Events: job.queued per job moved; one ready token per job moved.
]]
local limit = tonumber(ARGV[4])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, limit)
local queued = 0
for _, job_id in ipairs(due) do
  redis.call('ZREM', DELAYED, job_id)
  local key = JOB_PREFIX .. job_id
  local s = redis.call('HMGET', key, 'status', 'priority')
  if s[1] == 'SCHEDULED' or s[1] == 'RETRYING' then
    if s[1] == 'RETRYING' then redis.call('HINCRBY', STATS, 'retrying', -1) end
    push(key, job_id, s[2])
    emit('job.queued', job_id, now, {'from', s[1]})
    queued = queued + 1
  end
end
signal_ready(queued)
local opened = redis.call('ZRANGEBYSCORE', LIMITS_DUE, '-inf', now, 'LIMIT', 0, limit)
for _, lkey in ipairs(opened) do
  redis.call('ZREM', LIMITS_DUE, lkey)
  limit_resume(lkey, now)
end
if #due >= limit or #opened >= limit then return 0 end
local nxt = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')[2]
local window = redis.call('ZRANGE', LIMITS_DUE, 0, 0, 'WITHSCORES')[2]
if window and (not nxt or tonumber(window) < tonumber(nxt)) then nxt = window end
if not nxt then return -1 end
return math.max(1, tonumber(nxt) - now)
