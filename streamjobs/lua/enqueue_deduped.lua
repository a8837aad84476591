--[[ enqueue_deduped: submit one job under a dedupe key, unless the key's job stands for it.
The dedupe key (<dedupe prefix><dedupe key>) holds the id of the job that stands for it:
  until_done  while that job is not finished (and, with a window, for at most the window),
              a submit returns its id and queues nothing;
  throttle    for the window after that job was queued, whatever it does since;
  debounce    while that job waits for its start (SCHEDULED), a submit replaces its
              definition (args, kwargs, options: the last submit wins) and pushes its start
              back to now + window; a new job waits the window too. A job that has been
              promoted or started is not touched: a new one is queued.
Invariant: the check, the write of a new job (record with its stream entry or delayed-set
member) and the dedupe key are one step, so concurrent submits of one key queue one job.
KEYS 14 dedupe prefix (the other KEYS as every script's).
ARGV 4 job id, 5 priority, 6 delay (ms, 0 = now), 7 dedupe key, 8 mode, 9 window (ms, 0 =
none: until_done only), 10 the number N of record items that follow, then N items (field,
value ...).
Returns {outcome, job id}: 'queued' (a new job, the id given), 'deduped' (the standing job's
id, nothing written), 'debounced' (the standing job's id, its definition replaced), 'taken'
(the id given already had a record: an idempotent submit, nothing written).
Events: job.queued or job.scheduled for a new job; job.debounced with the new due time.
]]
local DEDUPE = KEYS[14] .. ARGV[7]
local job_id, priority, delay_ms = ARGV[4], ARGV[5], tonumber(ARGV[6])
local mode, window_ms, n = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local first, last = 11, 10 + n
local TERMINAL = {COMPLETED = true, FAILED = true, DEAD_LETTER = true, CANCELLED = true}
-- The fields a submit writes, replaced whole by a debounced submit (defaults are left out).
local REPLACED = {'handler', 'args', 'kwargs', 'priority', 'timeout', 'max_retries',
                  'retry_delay', 'retry_backoff'}
local now = now_ms()

local holder = redis.call('GET', DEDUPE)
local status = holder and redis.call('HGET', JOB_PREFIX .. holder, 'status')
if mode == 'throttle' and holder then  -- the key lives as long as the window
  return {'deduped', holder}
elseif mode == 'until_done' and status and not TERMINAL[status] then
  return {'deduped', holder}
elseif mode == 'debounce' and status == 'SCHEDULED' then
  local key = JOB_PREFIX .. holder
  local due = now + window_ms
  redis.call('HDEL', key, unpack(REPLACED))
  redis.call('HSET', key, unpack(ARGV, first, last))
  redis.call('ZADD', DELAYED, 'XX', due, holder)
  redis.call('PEXPIRE', DEDUPE, window_ms)
  emit('job.debounced', holder, now, {'due', due})
  return {'debounced', holder}
end

local key = JOB_PREFIX .. job_id
if redis.call('EXISTS', key) == 1 then return {'taken', job_id} end
if mode == 'debounce' then delay_ms = window_ms end
if delay_ms > 0 then
  local due = now + delay_ms
  wake_if_first(due)
  redis.call('ZADD', DELAYED, due, job_id)
  redis.call('HSET', key, 'created_at', now, 'status', 'SCHEDULED', unpack(ARGV, first, last))
  emit('job.scheduled', job_id, now, {'due', due})
else
  local entry = redis.call('XADD', stream_of(priority), '*', 'id', job_id)
  redis.call('HSET', key, 'created_at', now, 'status', 'PENDING', 'entry', entry,
             unpack(ARGV, first, last))
  emit('job.queued', job_id, now, nil)
  signal_ready(1)
end
if window_ms > 0 then
  redis.call('SET', DEDUPE, job_id, 'PX', window_ms)
else
  redis.call('SET', DEDUPE, job_id)
end
return {'queued', job_id}
