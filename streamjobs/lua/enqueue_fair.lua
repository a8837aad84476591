--[[ enqueue_fair: submit jobs that carry a limit_key (a tenant); as enqueue.lua, but a job
due now is queued fairly (see FAIR in the prelude): into its stream while its key has fewer
than FAIR_AHEAD there, else at the tail of its key's line, so that keys take turns however
many jobs each has waiting.
Invariant: a job's record and its stream entry (or line or delayed-set member) are written
together.
ARGV 4... per job: job id, priority (30, 20, 10, 0), delay (ms, 0 = now), limit key, the
number N of record items that follow, then N items (field, value ...).
Returns one code per job: 1 enqueued, 0 the id was taken (idempotent submit).
Events: job.queued, or job.scheduled with its due time, per job enqueued. One ready token
per job that entered its stream.
]]
local now = now_ms()
local codes = {}
local queued = 0
local ahead = {}  -- per "<priority>:<key>", its jobs in the stream (read once per call)
local i = 4
while i <= #ARGV do
  local job_id, priority, delay_ms = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local lkey, n = ARGV[i + 3], tonumber(ARGV[i + 4])
  local first, last = i + 5, i + 4 + n
  i = last + 1
  local key = JOB_PREFIX .. job_id
  if redis.call('EXISTS', key) == 1 then
    codes[#codes + 1] = 0
  elseif delay_ms > 0 then
    local due = now + delay_ms
    wake_if_first(due)
    redis.call('ZADD', DELAYED, due, job_id)
    redis.call('HSET', key, 'created_at', now, 'status', 'SCHEDULED', unpack(ARGV, first, last))
    emit('job.scheduled', job_id, now, {'due', due})
    codes[#codes + 1] = 1
  else
    local slot = priority .. ':' .. lkey
    ahead[slot] = ahead[slot] or tonumber(redis.call('HGET', FAIR, slot) or 0)
    if ahead[slot] < FAIR_AHEAD then  -- its key has room in the stream
      ahead[slot] = ahead[slot] + 1
      redis.call('HINCRBY', FAIR, slot, 1)
      local entry = redis.call('XADD', stream_of(priority), '*', 'id', job_id)
      redis.call('HSET', key, 'created_at', now, 'status', 'PENDING', 'entry', entry,
                 'fair', 'stream', unpack(ARGV, first, last))
      queued = queued + 1
    else  -- in its key's line, until its turn
      redis.call('RPUSH', FAIR .. ':' .. slot, job_id)
      redis.call('HINCRBY', STATS, 'in_line', 1)
      redis.call('HSET', key, 'created_at', now, 'status', 'PENDING', 'fair', 'line',
                 unpack(ARGV, first, last))
    end
    emit('job.queued', job_id, now, nil)
    codes[#codes + 1] = 1
  end
end
signal_ready(queued)
return codes
