--[[ get_schedules: read schedules and Redis' clock (writes nothing).
KEYS 14 schedules sorted set (name -> next due ms, +inf while paused), 15 schedule hash
prefix, 16 the schedulers' clock hash (see look_schedules).
ARGV 4... schedule names; none reads every schedule.
Returns {now ms, {{name, flat hash}, ...}}, unknown names left out.
]]
local SCHEDULES, SCHEDULE_PREFIX = KEYS[14], KEYS[15]
local names = {}
if #ARGV >= 4 then
  for i = 4, #ARGV do names[#names + 1] = ARGV[i] end
else
  names = redis.call('ZRANGE', SCHEDULES, 0, -1)
end
local found = {}
for _, name in ipairs(names) do
  local record = redis.call('HGETALL', SCHEDULE_PREFIX .. name)
  if #record > 0 then found[#found + 1] = {name, record} end
end
return {now_ms(), found}
