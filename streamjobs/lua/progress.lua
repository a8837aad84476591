--[[ progress: record the progress a running job reports.
Invariant: only the consumer holding the current attempt may write it.
ARGV 4 job id, 5 consumer, 6 attempt, 7 current, 8 total, 9 message ('' = none).
Returns 1 when recorded, 0 when the job is no longer this consumer's.
Events: job.progress with current, total, message.
]]
local job_id, owner, attempt = ARGV[4], ARGV[5], ARGV[6]
local current, total, message = ARGV[7], ARGV[8], ARGV[9]
local key = JOB_PREFIX .. job_id
if settle_check(key, owner, attempt) ~= 'ok' then return 0 end
local now = now_ms()
redis.call('HSET', key, 'progress_current', current, 'progress_total', total,
           'progress_message', message, 'progress_at', now)
emit('job.progress', job_id, now,
     {'current', current, 'total', total, 'message', message, 'attempt', attempt})
return 1
