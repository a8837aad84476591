--[[ fail: end a job FAILED, for good: its handler raised JobFailed. Never retried.
Invariant: as complete.lua, the entry is acknowledged only with the outcome recorded.
ARGV 4 job id, 5 consumer, 6 attempt, 7 stream index, 8 entry id, 9 error, 10 traceback
('' = none; kept in the record only, not in the event).
Returns 1 when recorded (or already recorded by this attempt), 0 when refused as stale.
Events: job.failed with status FAILED; for the jobs that waited for it, as
release_dependents.
]]
local job_id, owner, attempt = ARGV[4], ARGV[5], ARGV[6]
local index, entry, error = tonumber(ARGV[7]), ARGV[8], ARGV[9]
local key = JOB_PREFIX .. job_id
local check, dependents = settle_check(key, owner, attempt)
if check ~= 'ok' then return check == 'done' and 1 or 0 end
local now = now_ms()
drop_entry(STREAMS[index], entry)
redis.call('HSET', key, 'error', error, 'traceback', ARGV[10] or '')
finish(key, 'FAILED', now)
limit_release(key, job_id)
redis.call('HINCRBY', STATS, 'failed', 1)
emit('job.failed', job_id, now, {'status', 'FAILED', 'error', error, 'attempt', attempt})
if dependents then signal_ready(release_dependents(job_id, 'FAILED', nil, now)) end
return 1
