--[[ reclaim: take over entries whose lease lapsed (their worker died or stalled) and start
them for this consumer, highest priority first.
Invariant: a job's lease is its own, recorded by the pool that started it (`lease` in its
record, ms), so pools with different leases share a queue: an entry is taken over only once
idle past its job's lease, whatever this pool's lease. An entry whose record carries none (a
job started by an older version, an entry never started) lapses after this pool's lease.
A job that was RUNNING when its lease lapsed counts one crash when its worker pool is gone
(no heartbeat within that lease); at `max crashes` it is dead-lettered instead of killing yet
another worker, and its owner cleared, so that the lost worker, should it resume, is refused
as stale and the dead letter stands. A live pool's lapsed entry (a reply lost on the network,
a job past its timeout) and entries never started restart without a crash counted.
ARGV 4 consumer, 5 count, 6 lease (ms: this pool's, recorded for the jobs it starts, and the
one for entries with none), 7 max crashes, 8-11 scan cursors per stream (entry ids, '0-0' to
start over; kept by the caller between passes).
Returns {cursors (4), started jobs as in start.lua}.
Events: job.lost per crash counted; job.started (or job.limited, see start.lua);
job.dead_letter past max crashes.
]]
local owner, count = ARGV[4], tonumber(ARGV[5])
local lease_ms, max_crashes = tonumber(ARGV[6]), tonumber(ARGV[7])
-- Most candidates looked at per stream and call, so that a call stays short however many
-- jobs run; the cursor carries on from there on the next pass.
local SCAN = 200
local now = now_ms()
local cursors, started = {}, {}

-- The shortest lease a job here can hold: this pool's, or that of a pool in the registry
-- (each heartbeat record carries its pool's lease). Entries idle less are not looked at, so
-- that with one lease on the queue a pass reads only lapsed entries. A dead pool's record
-- outlives it by a while; once gone, its jobs still lapse by their own lease, found at worst
-- after this pool's.
local function shortest_lease()
  local floor = lease_ms
  for _, pool in ipairs(redis.call('ZRANGE', WORKERS, 0, -1)) do
    local lease = tonumber(redis.call('HGET', POOL_PREFIX .. pool, 'lease'))
    if lease and lease < floor then floor = lease end
  end
  return floor
end

-- True when the pool that held the job has sent a heartbeat within the job's lease.
local function pool_alive(pool, lease)
  local beat = pool and redis.call('HGET', POOL_PREFIX .. pool, 'heartbeat_at')
  return beat and now - tonumber(beat) < lease
end

-- Start a claimed entry for this consumer; `s` is its record's status, entry, owner.
local function take_over(index, entry, fields, job_id, s, lease)
  local key = JOB_PREFIX .. (job_id or '')
  if s[1] == 'RUNNING' and s[2] == entry and pool_alive(s[3], lease) then
    redis.call('HSET', key, 'status', 'PENDING')
  elseif s[1] == 'RUNNING' and s[2] == entry then
    local crashes = redis.call('HINCRBY', key, 'crashes', 1)
    emit('job.lost', job_id, now, {'crashes', crashes})
    if crashes >= max_crashes then
      drop_entry(STREAMS[index], entry)
      bury(key, job_id, 'its worker was lost ' .. crashes .. ' times while running it',
           'worker lost', now)
      redis.call('HDEL', key, 'owner', 'lease')  -- its attempt is over: a late word is stale
      limit_release(key, job_id)
      return
    end
    redis.call('HSET', key, 'status', 'PENDING')
  end
  local job = start_entry(index, entry, fields, owner, now, lease_ms)
  if job then started[#started + 1] = job end
end

-- Claim and start one pending entry, idle `idle` ms, if its job's lease has lapsed.
local function examine(index, entry, idle)
  local stream = STREAMS[index]
  local e = redis.call('XRANGE', stream, entry, entry)[1]
  if not e then  -- deleted while delivered: nothing is left to run
    redis.call('XACK', stream, GROUP, entry)
    return
  end
  local job_id = field(e[2], 'id')
  local s = job_id and redis.call('HMGET', JOB_PREFIX .. job_id, 'status', 'entry', 'owner',
                                  'lease') or {}
  local lease = (s[1] == 'RUNNING' and s[2] == entry and tonumber(s[4])) or lease_ms
  if idle < lease then return end
  redis.call('XCLAIM', stream, GROUP, owner, lease, entry, 'JUSTID')
  take_over(index, entry, e[2], job_id, s, lease)
end

local floor = shortest_lease()
for index = 1, 4 do
  local cursor = ARGV[7 + index]
  if count - #started > 0 then
    local pending = redis.call('XPENDING', STREAMS[index], GROUP, 'IDLE', floor, cursor, '+',
                               SCAN)
    cursor = (#pending < SCAN) and '0-0' or id_after(pending[#pending][1])
    for _, p in ipairs(pending) do
      if count - #started <= 0 then
        cursor = p[1]  -- not looked at yet: the next pass starts here
        break
      end
      examine(index, p[1], tonumber(p[3]))
    end
  end
  cursors[index] = cursor
end
return {cursors, started}
