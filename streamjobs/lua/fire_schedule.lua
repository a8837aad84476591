--[[ fire_schedule: queue a schedule's runs for due ticks, once however many pools try.
Compare-and-set: a tick fires only while the stored next due time still equals what the pool
read (ARGV 6) and is due by Redis' clock; the stored next time moves to ARGV 7 in the same
step, so every other pool's attempt for the same ticks finds it moved and does nothing. Each
run's job id is derived from the schedule and its tick (sched:<name>:<tick ms>): even a
replayed call cannot queue a tick twice.
A tick is skipped, not run, when it is later than the schedule's max_lateness, or (overlap
off) while the last run is still pending, scheduled, running or waiting to retry.
KEYS 14-16 as in get_schedules.
ARGV 4 name, 5 mode: 'tick' (the scheduler) or 'now' (trigger_schedule: one run now, any
  state, no overlap check, the next due time untouched), 6 expected next ms, 7 new next ms,
  8 ticks the misfire policy dropped (counted as skipped), 9... ticks to run, ascending (ms).
Returns {queued, skipped, job ids queued...}; {-1} when the schedule is unknown, {0, 0}
when the compare-and-set failed (paused, fired by another pool, or not due yet).
Events: job.queued (with schedule, tick) per run queued; schedule.skipped per tick skipped.
]]
local SCHEDULES, SCHEDULE_PREFIX = KEYS[14], KEYS[15]
local name, mode = ARGV[4], ARGV[5]
local key = SCHEDULE_PREFIX .. name
local now = now_ms()
local s = redis.call('HMGET', key, 'next', 'paused', 'last_job', 'overlap', 'max_lateness_ms',
                     'job', 'priority')
if not s[6] then
  redis.call('ZREM', SCHEDULES, name)
  return {-1}
end
local ticks = {}
if mode == 'tick' then
  if s[2] == '1' or s[1] ~= ARGV[6] or tonumber(s[1]) > now then return {0, 0} end
  for i = 9, #ARGV do ticks[#ticks + 1] = ARGV[i] end
else
  ticks = {now}
end
local fields = cjson.decode(s[6])
local late_ms = tonumber(s[5])
local last_job, last_tick = s[3], nil
local ACTIVE = {PENDING = true, SCHEDULED = true, RUNNING = true, RETRYING = true}
local queued, skipped = {}, 0
for _, tick in ipairs(ticks) do
  local job_id = 'sched:' .. name .. ':' .. tick
  if mode ~= 'tick' then job_id = 'sched:' .. name .. ':manual-' .. tick end
  local jkey = JOB_PREFIX .. job_id
  local reason = nil
  if mode == 'tick' and late_ms and now - tonumber(tick) > late_ms then
    reason = 'late'
  elseif mode == 'tick' and s[4] ~= '1' and last_job
      and ACTIVE[redis.call('HGET', JOB_PREFIX .. last_job, 'status') or ''] then
    reason = 'overlap'
  elseif redis.call('EXISTS', jkey) == 1 then
    reason = 'exists'
  end
  if reason then
    skipped = skipped + 1
    emit('schedule.skipped', job_id, now, {'schedule', name, 'tick', tick, 'reason', reason})
  else
    local entry = redis.call('XADD', stream_of(s[7]), '*', 'id', job_id)
    redis.call('HSET', jkey, 'created_at', now, 'status', 'PENDING', 'entry', entry,
               'schedule', name, unpack(fields))
    emit('job.queued', job_id, now, {'schedule', name, 'tick', tick})
    queued[#queued + 1] = job_id
    last_job, last_tick = job_id, tick
  end
end
signal_ready(#queued)
if last_tick then redis.call('HSET', key, 'last', last_tick, 'last_job', last_job) end
if mode == 'tick' then
  redis.call('HSET', key, 'next', ARGV[7])
  redis.call('ZADD', SCHEDULES, ARGV[7], name)
  skipped = skipped + tonumber(ARGV[8])
end
if #queued > 0 then redis.call('HINCRBY', key, 'fired', #queued) end
if skipped > 0 then redis.call('HINCRBY', key, 'skipped', skipped) end
local reply = {#queued, skipped}
for _, job_id in ipairs(queued) do reply[#reply + 1] = job_id end
return reply
