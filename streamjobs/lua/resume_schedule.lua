--[[ resume_schedule: let a paused schedule fire again from its first tick after now (the
ticks it was paused over never run).
KEYS 14-16 as in get_schedules. ARGV 4 name, 5 its first tick after now (ms).
Returns 1 resumed, 0 not paused, -1 unknown. Events: schedule.resumed.
]]
local SCHEDULES, SCHEDULE_PREFIX = KEYS[14], KEYS[15]
local name, next_ms = ARGV[4], ARGV[5]
local key = SCHEDULE_PREFIX .. name
local paused = redis.call('HGET', key, 'paused')
if not paused then return -1 end
if paused ~= '1' then return 0 end
local now = now_ms()
redis.call('HSET', key, 'paused', '0', 'next', next_ms, 'updated_at', now)
redis.call('ZADD', SCHEDULES, next_ms, name)
emit('schedule.resumed', '', now, {'schedule', name})
return 1
