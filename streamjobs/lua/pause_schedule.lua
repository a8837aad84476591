--[[ pause_schedule: stop a schedule firing (its score becomes +inf) until resumed.
KEYS 14-16 as in get_schedules. ARGV 4 name.
Returns 1 paused, 0 already paused, -1 unknown. Events: schedule.paused.
]]
local SCHEDULES, SCHEDULE_PREFIX = KEYS[14], KEYS[15]
local name = ARGV[4]
local key = SCHEDULE_PREFIX .. name
local paused = redis.call('HGET', key, 'paused')
if not paused then return -1 end
if paused == '1' then return 0 end
local now = now_ms()
redis.call('HSET', key, 'paused', '1', 'updated_at', now)
redis.call('ZADD', SCHEDULES, '+inf', name)
emit('schedule.paused', '', now, {'schedule', name})
return 1
