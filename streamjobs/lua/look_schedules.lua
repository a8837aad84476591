--[[ look_schedules: a pool's scheduler looks for due schedules, by Redis' clock.
Every look stamps the schedulers' clock hash: 'seen', the last look; 'back', when looks
resumed after none for longer than ARGV 5 (or ever). A queue without schedules is left
without any schedule key. Ticks before 'back' passed while no
pool looked: the misfire policy decides what runs for them.
KEYS 14-16 as in get_schedules. ARGV 4 most due schedules returned, 5 gap (ms).
Returns {now ms, back ms, {{name, flat hash}, ...} due now, ms until the next due schedule
(-1: none but paused ones)}.
]]
local SCHEDULES, SCHEDULE_PREFIX, CLOCK = KEYS[14], KEYS[15], KEYS[16]
local limit, gap = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
if redis.call('EXISTS', SCHEDULES) == 0 then return {now, now, {}, -1} end  -- no keys made
local st = redis.call('HMGET', CLOCK, 'seen', 'back')
local back = tonumber(st[2] or '0')
if not st[1] or now - tonumber(st[1]) > gap then back = now end
redis.call('HSET', CLOCK, 'seen', now, 'back', back)
local due = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', SCHEDULES, '-inf', now, 'LIMIT', 0, limit)) do
  due[#due + 1] = {name, redis.call('HGETALL', SCHEDULE_PREFIX .. name)}
end
local wait = -1
local first = redis.call('ZRANGEBYSCORE', SCHEDULES, '-inf', '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then wait = math.max(0, tonumber(first[2]) - now) end
return {now, back, due, wait}
