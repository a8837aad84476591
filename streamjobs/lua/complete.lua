--[[ complete: record a job's result and acknowledge its entry, in one step.
Invariant: at-least-once; the entry is acknowledged (and deleted) only here, with the result;
a consumer whose lease was taken over cannot write over the new owner's attempt.
ARGV 4 job id, 5 consumer, 6 attempt, 7 stream index, 8 entry id, 9 result (JSON).
Returns 1 when recorded (or already recorded by this attempt), 0 when refused as stale.
Events: job.completed.
]]
local job_id, owner, attempt = ARGV[4], ARGV[5], ARGV[6]
local index, entry, result = tonumber(ARGV[7]), ARGV[8], ARGV[9]
local key = JOB_PREFIX .. job_id
local check = settle_check(key, owner, attempt)
if check ~= 'ok' then return check == 'done' and 1 or 0 end
local now = now_ms()
drop_entry(STREAMS[index], entry)
redis.call('HSET', key, 'result', result)
finish(key, 'COMPLETED', now)
redis.call('HINCRBY', STATS, 'completed', 1)
emit('job.completed', job_id, now, {'attempt', attempt})
return 1
