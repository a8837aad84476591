--[[ cancel: end a job CANCELLED, whatever it is doing short of being finished.
A job that has not started (waiting for its dependencies, pending, scheduled or waiting to
retry) leaves its stream, the delayed set, its key's line (see FAIR) or its key's waiting
list (limit_park). A RUNNING job is settled here too: its entry is acknowledged and deleted, its
owner cleared, and its id pushed to its pool's control list (<pool prefix><pool id>:control),
which that pool blocks on: the pool cancels the handler's scope the moment it pops the id.
Invariant: a cancelled job leaves its stream or the delayed set in the same step. With the
entry gone and the owner cleared, the running attempt's late outcome (complete, fail, retry,
progress) is refused as stale, reclaim finds nothing to restart when its pool died, and the
pool's lease renewal reports the job lost should the control push never reach it.
ARGV 4 job id, 5 the control list's lifetime (ms): a pool that died leaves none behind.
Returns 1 when cancelled before it started, 2 when cancelled while running (its pool told),
0 when already terminal, -1 when unknown.
Events: job.cancelled with `from` (the status it left); for the jobs that waited for it,
as release_dependents (cancelled too, unless on_dep_fail is 'run').
]]
local job_id, control_ttl_ms = ARGV[4], tonumber(ARGV[5])
local key = JOB_PREFIX .. job_id
local s = redis.call('HMGET', key, 'status', 'entry', 'priority', 'owner', 'dependents',
                     'parked', 'fair', 'limit_key')
if not s[1] then return -1 end
local code = 1
if s[1] == 'WAITING' then  -- it is in no stream: its dependencies skip it once settled
  redis.call('HINCRBY', STATS, 'waiting', -1)
elseif s[1] == 'PENDING' and s[6] then  -- parked under its limit key, out of the streams
  local gone = redis.call('LREM', limit_name(s[6], 'waiting'), 1, job_id)
  redis.call('HINCRBY', STATS, 'limited', -gone)
  redis.call('HDEL', key, 'parked')
elseif s[1] == 'PENDING' and s[7] == 'line' then  -- in its key's line, out of the streams
  local gone = redis.call('LREM', FAIR .. ':' .. (s[3] or '10') .. ':' .. s[8], 1, job_id)
  redis.call('HINCRBY', STATS, 'in_line', -gone)
  redis.call('HDEL', key, 'fair')
elseif s[1] == 'PENDING' then
  drop_entry(stream_of(s[3]), s[2])
  if s[7] == 'stream' then
    fair_left(key, s[3] or '10', s[8])
    signal_ready(fair_state.fed)
  end
elseif s[1] == 'SCHEDULED' or s[1] == 'RETRYING' then
  redis.call('ZREM', DELAYED, job_id)
  if s[1] == 'RETRYING' then redis.call('HINCRBY', STATS, 'retrying', -1) end
elseif s[1] == 'RUNNING' then
  drop_entry(stream_of(s[3]), s[2])
  redis.call('HDEL', key, 'owner', 'lease')
  limit_release(key, job_id)
  if s[4] then
    local control = POOL_PREFIX .. s[4] .. ':control'
    redis.call('RPUSH', control, job_id)
    redis.call('PEXPIRE', control, control_ttl_ms)
  end
  code = 2
else
  return 0
end
local now = now_ms()
finish(key, 'CANCELLED', now)
redis.call('HINCRBY', STATS, 'cancelled', 1)
emit('job.cancelled', job_id, now, {'from', s[1], 'worker', s[4] or ''})
if s[5] then signal_ready(release_dependents(job_id, 'CANCELLED', nil, now)) end
return code
