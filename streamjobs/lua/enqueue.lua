--[[ enqueue: submit jobs; a job id that already has a record enqueues nothing. One call may
carry many jobs (a bulk submit), each enqueued on its own terms.
Invariant: a job's record and its stream entry (or delayed-set member) are written together.
ARGV 4... per job: job id, priority (30, 20, 10, 0), delay (ms, 0 = now), the number N of
record items that follow, then N items (field, value, field, value ...).
Returns one code per job: 1 enqueued, 0 the id was taken (idempotent submit).
Events: job.queued, or job.scheduled with its due time, per job enqueued. One ready token
per job queued now (see signal_ready).
]]
local now = now_ms()
local codes = {}
local queued = 0
local i = 4
while i <= #ARGV do
  local job_id, priority, delay_ms, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local first, last = i + 4, i + 3 + n
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
    local entry = redis.call('XADD', stream_of(priority), '*', 'id', job_id)
    redis.call('HSET', key, 'created_at', now, 'status', 'PENDING', 'entry', entry,
               unpack(ARGV, first, last))
    emit('job.queued', job_id, now, nil)
    codes[#codes + 1] = 1
    queued = queued + 1
  end
end
signal_ready(queued)
return codes
