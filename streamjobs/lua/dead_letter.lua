--[[ dead_letter: move a running job to the dead-letter stream: retries exhausted, unknown
handler, or a payload that cannot be decoded.
Invariant: the entry is acknowledged in the same step that writes the dead letter.
ARGV 4 job id, 5 consumer, 6 attempt, 7 stream index, 8 entry id, 9 error, 10 reason,
11 traceback ('' = none; kept in the record only, not in the dead letter or the events).
Returns 1 when recorded (or already recorded by this attempt), 0 when refused as stale.
Events: job.failed with status DEAD_LETTER, and job.dead_letter; for the jobs that waited
for it, as release_dependents (see bury).
]]
local job_id, owner, attempt = ARGV[4], ARGV[5], ARGV[6]
local index, entry, error, reason = tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local key = JOB_PREFIX .. job_id
local check = settle_check(key, owner, attempt)
if check ~= 'ok' then return check == 'done' and 1 or 0 end
drop_entry(STREAMS[index], entry)
limit_release(key, job_id)
redis.call('HSET', key, 'traceback', ARGV[11] or '')
bury(key, job_id, error, reason, now_ms())
return 1
