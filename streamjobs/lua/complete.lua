--[[ complete: record jobs' results and acknowledge their entries, in one step per job;
many jobs may be completed in one call.
Invariant: at-least-once; an entry is acknowledged (and deleted) only here, with its result;
a consumer whose lease was taken over cannot write over the new owner's attempt.
The acknowledgements come first: XACK, XTRIM and XDEL are allowed when Redis is out of
memory, and once a script has written, Redis lets it finish, so a full Redis can still drain
its queue. Acknowledged entries are deleted by forget_acked (one trim from the head).
ARGV 4... groups of six: job id, consumer, attempt, stream index, entry id, result (JSON).
Returns one code per job: 1 recorded (or already recorded by this attempt), 0 refused as
stale.
Events: job.completed per job; for the jobs that waited for it, as release_dependents.
]]
local now = now_ms()
local codes, fresh = {}, {}
local waited_for = {}  -- the fresh jobs others wait for (`dependents` in their records)
local done = {{}, {}, {}, {}}  -- entry ids to acknowledge and delete, per stream
for i = 4, #ARGV, 6 do
  local check, dependents = settle_check(JOB_PREFIX .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  if check == 'ok' then
    local entries = done[tonumber(ARGV[i + 3])]
    entries[#entries + 1] = ARGV[i + 4]
    fresh[#fresh + 1] = i
    if dependents then waited_for[#waited_for + 1] = i end
  end
  codes[#codes + 1] = (check == 'stale') and 0 or 1
end
for index = 1, 4 do
  if #done[index] > 0 then
    redis.call('XACK', STREAMS[index], GROUP, unpack(done[index]))
    forget_acked(STREAMS[index], done[index])
  end
end
for _, i in ipairs(fresh) do
  local key = JOB_PREFIX .. ARGV[i]
  redis.call('HSET', key, 'result', ARGV[i + 5], 'status', 'COMPLETED', 'finished_at', now)
  redis.call('PEXPIRE', key, RESULT_TTL_MS)
  emit('job.completed', ARGV[i], now, {'attempt', ARGV[i + 2]})
  limit_release(key, ARGV[i])
end
if #fresh > 0 then redis.call('HINCRBY', STATS, 'completed', #fresh) end
for _, i in ipairs(waited_for) do
  signal_ready(release_dependents(ARGV[i], 'COMPLETED', ARGV[i + 5], now))
end
return codes
