--[[ unschedule: delete a schedule; runs it already queued stay queued; the last
one takes the schedulers' clock with it.
KEYS 14-16 as in get_schedules. ARGV 4 name.
Returns 1 deleted, 0 unknown. Events: schedule.removed.
]]
local SCHEDULES, SCHEDULE_PREFIX, CLOCK = KEYS[14], KEYS[15], KEYS[16]
local name = ARGV[4]
redis.call('ZREM', SCHEDULES, name)
if redis.call('EXISTS', SCHEDULES) == 0 then redis.call('DEL', CLOCK) end
if redis.call('DEL', SCHEDULE_PREFIX .. name) == 0 then return 0 end
emit('schedule.removed', '', now_ms(), {'schedule', name})
return 1
