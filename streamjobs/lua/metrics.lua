--[[ metrics: one consistent snapshot of the queue's numbers (reads only).
ARGV 4 heartbeat age (ms) past which a pool counts as gone.
Returns {per stream {length, delivered}, delayed count, dead letters, stats flat, now,
pool records (flat lists)}.
]]
local max_age = tonumber(ARGV[4])
local now = now_ms()
local streams = {}
for index = 1, 4 do
  local delivered = 0
  local ok, summary = pcall(redis.call, 'XPENDING', STREAMS[index], GROUP)
  if ok then delivered = summary[1] end
  streams[index] = {redis.call('XLEN', STREAMS[index]), delivered}
end
local pools = {}
for _, pool in ipairs(redis.call('ZRANGEBYSCORE', WORKERS, now - max_age, '+inf')) do
  local record = redis.call('HGETALL', POOL_PREFIX .. pool)
  if record[1] then pools[#pools + 1] = record end
end
return {streams, redis.call('ZCARD', DELAYED), redis.call('XLEN', DEAD),
        redis.call('HGETALL', STATS), now, pools}
