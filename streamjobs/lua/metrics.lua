--[[ metrics: one consistent snapshot of the queue's numbers (reads only).
ARGV 4 heartbeat age (ms) past which a pool counts as gone.
Returns {per stream {length, delivered, age (ms) of its oldest entry not yet delivered or -1},
delayed count, dead letters, stats flat, now, pool records (flat lists)}.
]]
local max_age = tonumber(ARGV[4])
local now = now_ms()
-- The age of the stream's oldest entry not yet delivered: the first one after the group's
-- last delivered id (every entry up to that one was delivered), or the first of all while the
-- group is still to be made. -1 when there is none.
local function oldest_age(stream)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if not ok then return -1 end  -- no stream
  local after = '-'
  for _, group in ipairs(groups) do
    if field(group, 'name') == GROUP then after = '(' .. field(group, 'last-delivered-id') end
  end
  local first = redis.call('XRANGE', stream, after, '+', 'COUNT', 1)[1]
  if not first then return -1 end
  return math.max(0, now - tonumber(string.match(first[1], '^(%d+)')))
end

local streams = {}
for index = 1, 4 do
  local delivered = 0
  local ok, summary = pcall(redis.call, 'XPENDING', STREAMS[index], GROUP)
  if ok then delivered = summary[1] end
  streams[index] = {redis.call('XLEN', STREAMS[index]), delivered, oldest_age(STREAMS[index])}
end
local pools = {}
for _, pool in ipairs(redis.call('ZRANGEBYSCORE', WORKERS, now - max_age, '+inf')) do
  local record = redis.call('HGETALL', POOL_PREFIX .. pool)
  if record[1] then pools[#pools + 1] = record end
end
return {streams, redis.call('ZCARD', DELAYED), redis.call('XLEN', DEAD),
        redis.call('HGETALL', STATS), now, pools}
