--[[ retry_dead_letter: take a job out of the dead-letter stream and queue it afresh,
with its attempts reset.
Invariant: the dead letter is removed in the same step that queues the job.
ARGV 4 job id.
Returns 1 when queued again, 0 when the job is not a dead letter (or its record is gone).
Events: job.queued with from DEAD_LETTER; a ready token.
]]
local job_id = ARGV[4]
local key = JOB_PREFIX .. job_id
local s = redis.call('HMGET', key, 'status', 'dead_entry', 'priority')
if s[1] ~= 'DEAD_LETTER' then return 0 end
if s[2] then redis.call('XDEL', DEAD, s[2]) end
redis.call('HDEL', key, 'dead_entry', 'finished_at', 'started_at', 'result', 'owner',
           'retry_at', 'progress_current', 'progress_total', 'progress_message', 'progress_at')
redis.call('HSET', key, 'attempts', 0, 'crashes', 0)
redis.call('PERSIST', key)
push(key, job_id, s[3])
signal_ready(1)
emit('job.queued', job_id, now_ms(), {'from', 'DEAD_LETTER'})
return 1
