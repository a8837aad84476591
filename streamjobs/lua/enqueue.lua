--[[ enqueue: submit a job; a job id that already has a record enqueues nothing.
Invariant: the record and its stream entry (or delayed-set member) are written together.
ARGV 4 job id, 5 priority (30, 20, 10, 0), 6 delay (ms, 0 = now), 7... record field, value.
Returns {1, status} when enqueued, {0, status} when the id was taken (idempotent submit).
Events: job.queued, or job.scheduled with its due time.
]]
local job_id, priority, delay_ms = ARGV[4], ARGV[5], tonumber(ARGV[6])
local key = JOB_PREFIX .. job_id
local existing = redis.call('HGET', key, 'status')
if existing then return {0, existing} end
local now = now_ms()
redis.call('HSET', key, 'created_at', now, 'attempts', 0, unpack(ARGV, 7))
if delay_ms > 0 then
  local due = now + delay_ms
  wake_if_first(due)
  redis.call('ZADD', DELAYED, due, job_id)
  redis.call('HSET', key, 'status', 'SCHEDULED')
  emit('job.scheduled', job_id, now, {'due', due})
  return {1, 'SCHEDULED'}
end
push(key, job_id, priority)
emit('job.queued', job_id, now, nil)
return {1, 'PENDING'}
