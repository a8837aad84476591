--[[ enqueue_dependent: submit jobs that wait for other jobs (depends_on). A chain or a group
is one call: its jobs in order, each free to depend on jobs before it in the same call.
Invariant: a dependency's state is read and the dependent registered with it (in the
dependency's dependents set, read by the script that settles it) in one step, so a dependency that
settles meanwhile is never missed: either it had settled (its result is copied now) or it
will find the dependent in its set. Every dependency must have a record (here, or earlier in
the call): else nothing at all is written.
A dependent whose dependencies all completed is queued at once; one with a dependency that
ended FAILED, DEAD_LETTER or CANCELLED is cancelled at once (on dependency failure 'cancel')
or counts it as settled ('run'); any other waits, WAITING, with `deps_left` to go.
ARGV 4... per job: job id, priority (30, 20, 10, 0), delay (ms, applied once released),
on dependency failure ('cancel' or 'run'), the number D of dependency ids, D ids, the number
N of record items that follow, then N items (field, value ...).
Returns {'ok', {code per job}} (1 written, 0 the id was taken: nothing written for it), or
{'unknown', dependency id} when a dependency has no record (nothing written).
Events: job.waiting with the number of dependencies to go; job.queued or job.scheduled for
a job released at once; job.cancelled for one a failed dependency cancels at once.
]]
local TERMINAL = {COMPLETED = true, FAILED = true, DEAD_LETTER = true, CANCELLED = true}
local DEPENDENTS_PREFIX = string.sub(JOB_PREFIX, 1, -5) .. 'dependents:'  -- as the settles read it
local jobs, batch = {}, {}
local i = 4
while i <= #ARGV do
  local job = {id = ARGV[i], priority = ARGV[i + 1], delay = tonumber(ARGV[i + 2]),
               on_fail = ARGV[i + 3]}
  local d = tonumber(ARGV[i + 4])
  job.deps = {}
  for k = 1, d do job.deps[k] = ARGV[i + 4 + k] end
  local n = tonumber(ARGV[i + 5 + d])
  job.first, job.last = i + 6 + d, i + 5 + d + n
  i = job.last + 1
  for _, dep in ipairs(job.deps) do
    if not batch[dep] and redis.call('EXISTS', JOB_PREFIX .. dep) == 0 then
      return {'unknown', dep}
    end
  end
  batch[job.id] = true
  jobs[#jobs + 1] = job
end

local now = now_ms()
local codes, queued = {}, 0
for _, job in ipairs(jobs) do
  local key = JOB_PREFIX .. job.id
  if redis.call('EXISTS', key) == 1 then
    codes[#codes + 1] = 0
  else
    codes[#codes + 1] = 1
    local cmd = {'HSET', key, 'created_at', now}
    if #job.deps > 0 then
      cmd[#cmd + 1] = 'depends_on'; cmd[#cmd + 1] = table.concat(job.deps, ',')
    end
    if job.on_fail == 'run' then cmd[#cmd + 1] = 'on_dep_fail'; cmd[#cmd + 1] = 'run' end
    for k = job.first, job.last do cmd[#cmd + 1] = ARGV[k] end
    local open, failed = {}, nil  -- dependencies not settled yet; the first that failed
    local results = {}  -- dep:<id>, result of those completed (copied in once written)
    for _, dep in ipairs(job.deps) do
      local d = redis.call('HMGET', JOB_PREFIX .. dep, 'status', 'result')
      if d[1] == 'COMPLETED' then
        if d[2] then results[#results + 1] = {'dep:' .. dep, d[2]} end
      elseif TERMINAL[d[1]] then
        if job.on_fail ~= 'run' then failed = failed or (dep .. ' ended ' .. d[1]) end
      else
        open[#open + 1] = dep
      end
    end
    local function write()
      redis.call(unpack(cmd))
      for _, r in ipairs(results) do redis.call('HSET', key, r[1], r[2]) end
    end
    if failed then
      local error = 'dependency ' .. failed
      write()
      redis.call('HSET', key, 'error', error)
      finish(key, 'CANCELLED', now)
      redis.call('HINCRBY', STATS, 'cancelled', 1)
      emit('job.cancelled', job.id, now, {'from', 'WAITING', 'error', error})
    elseif #open > 0 then
      for _, part in ipairs({'status', 'WAITING', 'deps_left', #open}) do cmd[#cmd + 1] = part end
      if job.delay > 0 then cmd[#cmd + 1] = 'wait_delay'; cmd[#cmd + 1] = job.delay end
      write()
      for _, dep in ipairs(open) do
        redis.call('SADD', DEPENDENTS_PREFIX .. dep, job.id)
        redis.call('HSET', JOB_PREFIX .. dep, 'dependents', 1)
      end
      redis.call('HINCRBY', STATS, 'waiting', 1)
      emit('job.waiting', job.id, now, {'dependencies', #open})
    elseif job.delay > 0 then
      local due = now + job.delay
      cmd[#cmd + 1] = 'status'; cmd[#cmd + 1] = 'SCHEDULED'
      write()
      wake_if_first(due)
      redis.call('ZADD', DELAYED, due, job.id)
      emit('job.scheduled', job.id, now, {'due', due})
    else
      write()
      push(key, job.id, job.priority)
      emit('job.queued', job.id, now, nil)
      queued = queued + 1
    end
  end
end
signal_ready(queued)
return {'ok', codes}
