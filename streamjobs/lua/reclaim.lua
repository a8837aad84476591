--[[ reclaim: take over entries whose lease lapsed (their worker died or stalled) and start
them for this consumer, highest priority first.
Invariant: a job that was RUNNING when its lease lapsed counts one crash when its worker pool
is gone (no heartbeat within the last lease); at `max crashes` it is dead-lettered instead
of killing yet another worker. A live pool's lapsed entry (a reply lost on the network, a job
past its timeout) and entries never started restart without a crash counted.
ARGV 4 consumer, 5 count, 6 lease (ms of idleness that make an entry lapsed), 7 max crashes,
8-11 XAUTOCLAIM cursors per stream (kept by the caller between passes).
Returns {cursors (4), started jobs as in start.lua}.
Events: job.lost per crash counted; job.started; job.dead_letter past max crashes.
]]
local owner, count, lease_ms, max_crashes = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local now = now_ms()
local cursors, started = {}, {}

-- True when the pool that held the job has sent a heartbeat within the last lease.
local function pool_alive(pool)
  local beat = pool and redis.call('HGET', POOL_PREFIX .. pool, 'heartbeat_at')
  return beat and now - tonumber(beat) < tonumber(lease_ms)
end

local function take_over(index, entry, fields)
  local job_id = field(fields, 'id')
  local key = JOB_PREFIX .. (job_id or '')
  local s = job_id and redis.call('HMGET', key, 'status', 'entry', 'owner') or {}
  if s[1] == 'RUNNING' and s[2] == entry and pool_alive(s[3]) then
    redis.call('HSET', key, 'status', 'PENDING')
  elseif s[1] == 'RUNNING' and s[2] == entry then
    local crashes = redis.call('HINCRBY', key, 'crashes', 1)
    emit('job.lost', job_id, now, {'crashes', crashes})
    if crashes >= max_crashes then
      drop_entry(STREAMS[index], entry)
      bury(key, job_id, 'its worker was lost ' .. crashes .. ' times while running it',
           'worker lost', now)
      return
    end
    redis.call('HSET', key, 'status', 'PENDING')
  end
  local job = start_entry(index, entry, fields, owner, now)
  if job then started[#started + 1] = job end
end

for index = 1, 4 do
  local cursor = ARGV[7 + index]
  if count - #started > 0 then
    local reply = redis.call('XAUTOCLAIM', STREAMS[index], GROUP, owner, lease_ms, cursor,
                             'COUNT', count - #started)
    cursor = reply[1]
    for _, e in ipairs(reply[2]) do
      if type(e) == 'table' and type(e[2]) == 'table' then
        take_over(index, e[1], e[2])
      elseif type(e) == 'table' then
        redis.call('XACK', STREAMS[index], GROUP, e[1])
      end
    end
  end
  cursors[index] = cursor
end
return {cursors, started}
