--[[ retry: a failed attempt waits out its backoff in the delayed set, then runs again.
Invariant: the entry is acknowledged in the same step that parks the job in the delayed set.
ARGV 4 job id, 5 consumer, 6 attempt, 7 stream index, 8 entry id, 9 error, 10 delay (ms),
11 traceback ('' = none; kept in the record only, not in the event).
Returns 1 when recorded (or already recorded by this attempt), 0 when refused as stale.
Events: job.retrying with the error and the delay.
]]
local job_id, owner, attempt = ARGV[4], ARGV[5], ARGV[6]
local index, entry, error, delay_ms = tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local key = JOB_PREFIX .. job_id
local check = settle_check(key, owner, attempt)
if check ~= 'ok' then return check == 'done' and 1 or 0 end
local now = now_ms()
local due = now + delay_ms
drop_entry(STREAMS[index], entry)
limit_release(key, job_id)
redis.call('HSET', key, 'status', 'RETRYING', 'error', error, 'retry_at', due,
           'traceback', ARGV[11] or '')
wake_if_first(due)
redis.call('ZADD', DELAYED, due, job_id)
redis.call('HINCRBY', STATS, 'retrying', 1)
redis.call('HINCRBY', STATS, 'retried', 1)
emit('job.retrying', job_id, now, {'attempt', attempt, 'error', error, 'delay_ms', delay_ms})
return 1
