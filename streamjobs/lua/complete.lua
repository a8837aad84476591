--[[ complete: record jobs' results and acknowledge their entries, in one step per job;
many jobs may be completed in one call.
Invariant: at-least-once; an entry is acknowledged (and deleted) only here, with its result;
a consumer whose lease was taken over cannot write over the new owner's attempt.
ARGV 4... groups of six: job id, consumer, attempt, stream index, entry id, result (JSON).
Returns one code per job: 1 recorded (or already recorded by this attempt), 0 refused as
stale.
Events: job.completed per job.
]]
local now = now_ms()
local codes, fresh = {}, 0
local done = {{}, {}, {}, {}}  -- entry ids to acknowledge and delete, per stream
for i = 4, #ARGV, 6 do
  local job_id, owner, attempt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = JOB_PREFIX .. job_id
  local check = settle_check(key, owner, attempt)
  if check == 'ok' then
    local entries = done[tonumber(ARGV[i + 3])]
    entries[#entries + 1] = ARGV[i + 4]
    redis.call('HSET', key, 'result', ARGV[i + 5], 'status', 'COMPLETED', 'finished_at', now)
    redis.call('PEXPIRE', key, RESULT_TTL_MS)
    emit('job.completed', job_id, now, {'attempt', attempt})
    codes[#codes + 1] = 1
    fresh = fresh + 1
  else
    codes[#codes + 1] = check == 'done' and 1 or 0
  end
end
for index = 1, 4 do
  if #done[index] > 0 then
    redis.call('XACK', STREAMS[index], GROUP, unpack(done[index]))
    redis.call('XDEL', STREAMS[index], unpack(done[index]))
  end
end
if fresh > 0 then redis.call('HINCRBY', STATS, 'completed', fresh) end
return codes
