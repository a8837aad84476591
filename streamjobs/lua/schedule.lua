--[[ schedule: create a schedule, or update one by name. A paused schedule stays paused;
its next due time is kept while its timing (kind, expression, time zone) is unchanged, so
calling schedule() again at every start of an app neither moves nor loses a tick.
KEYS 14-16 as in get_schedules.
ARGV 4 name, 5 timing key, 6 next due ms for a new timing, 7... the schedule's fields.
The schedulers' clock starts with the first schedule (see look_schedules).
Returns 1 created, 0 updated.
Events: schedule.created or schedule.updated (job_id empty, schedule = name).
]]
local SCHEDULES, SCHEDULE_PREFIX, CLOCK = KEYS[14], KEYS[15], KEYS[16]
local name, timing, next_ms = ARGV[4], ARGV[5], ARGV[6]
local key = SCHEDULE_PREFIX .. name
local now = now_ms()
local old = redis.call('HMGET', key, 'timing', 'paused', 'next')
local created = not old[1]
if old[1] == timing and old[3] then next_ms = old[3] end
local paused = old[2] == '1'
redis.call('HSET', key, 'timing', timing, 'next', next_ms, 'paused', paused and '1' or '0',
           'updated_at', now, unpack(ARGV, 7))
redis.call('ZADD', SCHEDULES, paused and '+inf' or next_ms, name)
-- pools that were running already look from now on: the first schedule's ticks are on time
redis.call('HSETNX', CLOCK, 'seen', now)
emit(created and 'schedule.created' or 'schedule.updated', '', now, {'schedule', name})
if created then return 1 end
return 0
