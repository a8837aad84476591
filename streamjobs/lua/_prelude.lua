--[[ _prelude.lua: names and helpers shared by every streamjobs script (prepended at load).

KEYS, the same for every script (built by streamjobs/_keys.py, one hash tag for the queue):
  1-4  priority streams: critical, high, normal, low; each carries the consumer group 'workers'
  5    delayed      sorted set: job id -> due time (ms); scheduled jobs and retries
  6    dead         stream of dead letters
  7    events       stream of lifecycle events, trimmed
  8    stats        hash of counters (completed, failed, ...) and the 'retrying' gauge
  9    workers      sorted set: pool id -> last heartbeat (ms)
  10   job prefix   a job's record hash is <job prefix><job id>
  11   wake         list the promoter blocks on; pushed when a sooner delayed job arrives
  12   pool prefix  a worker pool's heartbeat hash is <pool prefix><pool id>
  13   ready        list idle readers block on (BLPOP, then start.lua in the same write): one
                    token per job made ready; start.lua clears it once no new entry is left
ARGV 1-3, the same for every script: events stream length (0 = no events stream),
  result TTL (ms), dead letters kept. A script's own arguments start at ARGV[4].
Time is the server's (TIME), so every process shares one clock.
]]
local STREAMS = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
local DELAYED = KEYS[5]
local DEAD = KEYS[6]
local EVENTS = KEYS[7]
local STATS = KEYS[8]
local WORKERS = KEYS[9]
local JOB_PREFIX = KEYS[10]
local WAKE = KEYS[11]
local POOL_PREFIX = KEYS[12]
local READY = KEYS[13]
local EVENTS_MAXLEN = tonumber(ARGV[1])
local RESULT_TTL_MS = tonumber(ARGV[2])
local MAX_DEAD = tonumber(ARGV[3])
local GROUP = 'workers'
local STREAM_OF_PRIORITY = {['30'] = 1, ['20'] = 2, ['10'] = 3, ['0'] = 4}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append a lifecycle event; `extra` is a flat list of field, value (nil for none).
local function emit(kind, job_id, now, extra)
  if EVENTS_MAXLEN <= 0 then return end
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', kind, 'job_id', job_id,
             'at', now, unpack(extra or {}))
end

-- The value of `name` in a flat field/value list (a stream entry), or nil.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function stream_of(priority)
  return STREAMS[STREAM_OF_PRIORITY[priority] or 3]
end

-- Acknowledge and delete a stream entry: XACK alone would let the stream grow forever.
local function drop_entry(stream, entry)
  redis.call('XACK', stream, GROUP, entry)
  redis.call('XDEL', stream, entry)
end

-- True when stream entry id `a` comes before `b` (ids are "ms-seq"; both parts fit a double).
local function id_before(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  return a_ms < b_ms or (a_ms == b_ms and tonumber(a_seq) < tonumber(b_seq))
end

-- The id right after `id`, or `id` itself where its sequence is too large to count on.
local function id_after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  seq = tonumber(seq)
  if seq >= 2 ^ 52 then return id end
  return ms .. '-' .. string.format('%.0f', seq + 1)
end

-- Delete entries just acknowledged. Every entry up to the newest one acknowledged here has
-- been delivered, so every entry before the oldest one still pending, up to that newest
-- one, has been acknowledged too: those go in one trim from the head (XDEL finds each entry
-- by a scan of its node, which costs more than the rest of a completion). The entries an
-- older pending one holds back are deleted one by one.
local function forget_acked(stream, entries)
  local newest = entries[1]
  for i = 2, #entries do
    if id_before(newest, entries[i]) then newest = entries[i] end
  end
  local floor = id_after(newest)
  local oldest = redis.call('XPENDING', stream, GROUP, '-', '+', 1)[1]
  if oldest and id_before(oldest[1], floor) then floor = oldest[1] end
  redis.call('XTRIM', stream, 'MINID', floor)
  local rest = {}
  for _, e in ipairs(entries) do
    if not id_before(e, floor) then rest[#rest + 1] = e end
  end
  if #rest > 0 then redis.call('XDEL', stream, unpack(rest)) end
end

-- Wake up to `n` idle readers: each token wakes one. Capped: a reader that wakes takes
-- many jobs, and one that finds none clears the tokens (start.lua).
local READY_CAP = 1000
local function signal_ready(n)
  if n <= 0 then return end
  local tokens = {}
  for i = 1, math.min(n, READY_CAP) do tokens[i] = '1' end
  -- trimmed back to the cap only once it is twice over: with no reader waiting (workers all
  -- busy, or none), a submit then costs one push, not a push and a trim
  if redis.call('LPUSH', READY, unpack(tokens)) > 2 * READY_CAP then
    redis.call('LTRIM', READY, 0, READY_CAP - 1)
  end
end

-- Put a job at the tail of its priority stream as PENDING. The caller wakes readers once
-- for all the jobs it queued (signal_ready), not once per job.
local function push(key, job_id, priority)
  local entry = redis.call('XADD', stream_of(priority), '*', 'id', job_id)
  redis.call('HSET', key, 'status', 'PENDING', 'entry', entry)
  return entry
end

-- Wake the promoters when `due` is sooner than every delayed job they wait for.
local function wake_if_first(due)
  local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > due then
    redis.call('LPUSH', WAKE, '1')
    redis.call('LTRIM', WAKE, 0, 0)
  end
end

-- 'ok' when `owner` holds attempt `attempt` of the job; 'done' when it already settled it
-- (a replay after a lost reply); 'stale' when the job has moved on without it.
-- With 'ok' comes the record's `dependents` flag (nil for a job no other job waits for), so
-- that a settle knows whether jobs wait for this one without another read.
local function settle_check(key, owner, attempt)
  local s = redis.call('HMGET', key, 'status', 'owner', 'attempts', 'dependents')
  if s[2] ~= owner or s[3] ~= attempt then return 'stale' end
  if s[1] == 'RUNNING' then return 'ok', s[4] end
  return 'done'
end

-- Mark a job terminal; its record expires after the result TTL.
local function finish(key, status, now)
  redis.call('HSET', key, 'status', status, 'finished_at', now)
  redis.call('PEXPIRE', key, RESULT_TTL_MS)
end

-- Settle the jobs waiting for `job_id`, which just ended `status`: COMPLETED (its `result`
-- JSON is copied into each dependent's record as `dep:<id>`, so the dependent reads it
-- whatever the dependency's result TTL), or FAILED, DEAD_LETTER, CANCELLED. A dependent
-- whose last dependency this was is queued: PENDING, or SCHEDULED after its own delay
-- (`wait_delay`, ms). A failure cancels a dependent, with an error naming the dependency
-- (unless its on_dep_fail is 'run': then the failure counts as settled), and that
-- cancellation reaches the dependent's own dependents, and so on down.
-- The jobs waiting for job <id> are the set <job prefix minus 'job:'>dependents:<id>
-- (beside the records, under the same hash tag); a job with such a set carries
-- `dependents` = 1 in its record, so a settle calls this only for such a job. Its helpers
-- are defined inside, so that the settles of jobs nobody waits for never pay for them.
-- Returns how many jobs were queued now (the ready tokens owed).
local function release_dependents(job_id, status, result, now)
  local prefix = string.sub(JOB_PREFIX, 1, -5) .. 'dependents:'
  local function release(key, id)
    local s = redis.call('HMGET', key, 'priority', 'wait_delay')
    redis.call('HINCRBY', STATS, 'waiting', -1)
    local delay_ms = tonumber(s[2]) or 0
    if delay_ms <= 0 then
      push(key, id, s[1] or '10')
      emit('job.queued', id, now, {'from', 'WAITING'})
      return 1
    end
    local due = now + delay_ms
    wake_if_first(due)
    redis.call('ZADD', DELAYED, due, id)
    redis.call('HSET', key, 'status', 'SCHEDULED')
    emit('job.scheduled', id, now, {'due', due, 'from', 'WAITING'})
    return 0
  end
  local function cancel(key, id, dep, dep_status)
    local error = 'dependency ' .. dep .. ' ended ' .. dep_status
    redis.call('HSET', key, 'error', error)
    finish(key, 'CANCELLED', now)
    redis.call('HINCRBY', STATS, 'waiting', -1)
    redis.call('HINCRBY', STATS, 'cancelled', 1)
    emit('job.cancelled', id, now, {'from', 'WAITING', 'error', error})
  end
  local queued = 0
  local todo = {{job_id, status, result}}
  local n = 1
  while n <= #todo do
    local dep, dep_status, dep_result = todo[n][1], todo[n][2], todo[n][3]
    n = n + 1
    local set = prefix .. dep
    local members = redis.call('SORT', set, 'ALPHA')
    redis.call('DEL', set)
    redis.call('HDEL', JOB_PREFIX .. dep, 'dependents')
    for _, id in ipairs(members) do
      local key = JOB_PREFIX .. id
      local s = redis.call('HMGET', key, 'status', 'on_dep_fail', 'dependents')
      if s[1] == 'WAITING' then
        if dep_status == 'COMPLETED' or s[2] == 'run' then
          if dep_result then redis.call('HSET', key, 'dep:' .. dep, dep_result) end
          if redis.call('HINCRBY', key, 'deps_left', -1) <= 0 then
            queued = queued + release(key, id)
          end
        else
          cancel(key, id, dep, dep_status)
          if s[3] then todo[#todo + 1] = {id, 'CANCELLED', nil} end
        end
      end
    end
  end
  return queued
end

-- Keep at most MAX_DEAD dead letters; a trimmed job's record then expires like any result.
local function trim_dead()
  local excess = redis.call('XLEN', DEAD) - MAX_DEAD
  if excess <= 0 then return end
  for _, e in ipairs(redis.call('XRANGE', DEAD, '-', '+', 'COUNT', excess)) do
    local job_id = field(e[2], 'id')
    if job_id and redis.call('HGET', JOB_PREFIX .. job_id, 'dead_entry') == e[1] then
      redis.call('PEXPIRE', JOB_PREFIX .. job_id, RESULT_TTL_MS)
    end
    redis.call('XDEL', DEAD, e[1])
  end
end

-- The fields of a job's record that its dead letter keeps (a record leaves out defaults).
local DEFINITION = {handler = true, args = true, kwargs = true, priority = true, timeout = true,
                    max_retries = true, retry_delay = true, retry_backoff = true,
                    attempts = true, created_at = true}

-- Move a known job to the dead-letter stream; its record stays while the dead letter does.
local function bury(key, job_id, error, reason, now)
  local cmd = {'XADD', DEAD, '*', 'id', job_id}
  local record = redis.call('HGETALL', key)
  local waited_for = false  -- jobs wait for this one (`dependents`)
  for i = 1, #record, 2 do
    if DEFINITION[record[i]] then
      cmd[#cmd + 1] = record[i]
      cmd[#cmd + 1] = record[i + 1]
    elseif record[i] == 'dependents' then
      waited_for = true
    end
  end
  for _, part in ipairs({'error', error, 'reason', reason, 'failed_at', now}) do
    cmd[#cmd + 1] = part
  end
  local dead = redis.call(unpack(cmd))
  redis.call('HSET', key, 'status', 'DEAD_LETTER', 'error', error, 'finished_at', now,
             'dead_entry', dead)
  redis.call('PERSIST', key)
  redis.call('HINCRBY', STATS, 'dead_lettered', 1)
  trim_dead()
  emit('job.failed', job_id, now, {'status', 'DEAD_LETTER', 'error', error})
  emit('job.dead_letter', job_id, now, {'error', error, 'reason', reason})
  if waited_for then signal_ready(release_dependents(job_id, 'DEAD_LETTER', nil, now)) end
end

-- Dead-letter a stream entry that is not a job of ours, keeping the raw entry.
local function bury_raw(stream, entry, fields, reason, now)
  local cmd = {'XADD', DEAD, '*', 'id', '', 'handler', '', 'error', reason, 'reason', reason,
               'failed_at', now, 'raw_stream', stream, 'raw_entry', entry}
  for i = 1, #fields, 2 do
    cmd[#cmd + 1] = 'raw:' .. tostring(fields[i])
    cmd[#cmd + 1] = tostring(fields[i + 1])
  end
  redis.call(unpack(cmd))
  drop_entry(stream, entry)
  redis.call('HINCRBY', STATS, 'dead_lettered', 1)
  trim_dead()
  emit('job.dead_letter', '', now, {'error', reason, 'reason', reason, 'entry', entry})
end

-- Limits (set_limit.lua). LIMITS: hash of limit key -> "concurrency rate window_ms" (0 =
-- none). Per limited key: <base>limit:<key>:active, set of the ids of its jobs holding a slot;
-- :log, sorted set of its starts within the rate window (by time, ms); :waiting, list of its
-- jobs parked outside the streams until it has room. LIMITS_DUE: sorted set of limit key ->
-- when its rate window next opens (ms), read by promote.lua. A job's limit key is its
-- `limit_key` field, else its handler. The names are built from the job prefix, which carries
-- the queue's hash tag, so every one of them lives in the partition's slot.
local LIMIT_BASE = string.sub(JOB_PREFIX, 1, -5)
local LIMITS = LIMIT_BASE .. 'limits'
local LIMITS_DUE = LIMIT_BASE .. 'limits:due'
local limit_state = {}

local function limit_name(lkey, part)
  return LIMIT_BASE .. 'limit:' .. lkey .. ':' .. part
end

-- True when any limit is set: read once per script call, the one cost a job without a
-- limit pays.
local function limited()
  if limit_state.on == nil then limit_state.on = redis.call('EXISTS', LIMITS) == 1 end
  return limit_state.on
end

-- A limit's spec as concurrency, rate, window (ms).
local function limit_spec(spec)
  local c, r, w = string.match(spec, '^(%d+) (%d+) (%d+)$')
  return tonumber(c), tonumber(r), tonumber(w)
end

-- Wake the promoter when `due` is sooner than anything it waits for.
local function limit_wake_promoter(due)
  local first = redis.call('ZRANGE', LIMITS_DUE, 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > due then wake_if_first(due) end
end

-- Move up to `n` jobs parked under `lkey` back to the tail of their streams, PENDING, and
-- wake readers for them. Returns how many moved.
local function limit_wake(lkey, n)
  local waiting, moved = limit_name(lkey, 'waiting'), 0
  while moved < n do
    local job_id = redis.call('LPOP', waiting)
    if not job_id then break end
    redis.call('HINCRBY', STATS, 'limited', -1)
    local key = JOB_PREFIX .. job_id
    local s = redis.call('HMGET', key, 'status', 'priority', 'parked')
    if s[1] == 'PENDING' and s[3] then
      redis.call('HDEL', key, 'parked')
      push(key, job_id, s[2])
      moved = moved + 1
    end
  end
  signal_ready(moved)
  return moved
end

-- How many jobs of `lkey` may start now under `spec`, and, when its rate is what holds it
-- back, the time its window opens for one more start given `extra` starts about to come.
-- `held`: slots counted already for the caller's job (1 when it was just added to them).
local function limit_room(lkey, spec, now, extra, held)
  local c, r, w = limit_spec(spec)
  local room = 1e9
  if c > 0 then room = c + held - redis.call('SCARD', limit_name(lkey, 'active')) end
  if r == 0 then return room, nil end
  local log = limit_name(lkey, 'log')
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - w)
  local count = redis.call('ZCARD', log)
  if r - count < room then room = r - count end
  local k = count + extra - r  -- the start whose leaving the window makes room
  if k < 0 then return room, nil end
  local at = redis.call('ZRANGE', log, k, k, 'WITHSCORES')
  return room, (at[2] and tonumber(at[2]) or now) + w
end

-- Park job `job_id` (its record at `key`) under `lkey` until there is room: out of the
-- streams, PENDING, its attempts untouched; `due` is when its rate window opens, if that is
-- what holds it back. The stats' 'limited' gauge counts the jobs parked. Emits job.limited
-- with the key and what holds it back ('concurrency' or 'rate').
local function limit_park(key, job_id, lkey, due, now)
  emit('job.limited', job_id, now, {'key', lkey, 'by', due and 'rate' or 'concurrency'})
  redis.call('RPUSH', limit_name(lkey, 'waiting'), job_id)
  redis.call('HINCRBY', STATS, 'limited', 1)
  redis.call('HSET', key, 'parked', lkey)
  redis.call('HDEL', key, 'entry')
  if due then
    limit_wake_promoter(due)
    redis.call('ZADD', LIMITS_DUE, 'LT', due, lkey)
  end
end

-- Admit a job about to start under its key's limit (true), taking a slot and logging the
-- start; or park it (false). A job that holds its slot already (taken over by reclaim after
-- its worker died) keeps it: it is counted in first, and out again when parked.
local function limit_admit(key, job_id, lkey, now)
  local spec = redis.call('HGET', LIMITS, lkey)
  if not spec then return true end
  local active = limit_name(lkey, 'active')
  if redis.call('SADD', active, job_id) == 0 then return true end
  local room, due = limit_room(lkey, spec, now, 0, 1)
  if room <= 0 then
    redis.call('SREM', active, job_id)
    limit_park(key, job_id, lkey, due, now)
    return false
  end
  local _, r, w = limit_spec(spec)
  if r > 0 then
    local log = limit_name(lkey, 'log')
    redis.call('ZADD', log, now, job_id .. '@' .. now)
    redis.call('PEXPIRE', log, w)
  end
  return true
end

-- Give back the slot a job holds under its limit key, if any, and move one parked job of
-- that key back to its stream. Called by every script that ends a running attempt.
local function limit_release(key, job_id)
  if not limited() then return end
  local s = redis.call('HMGET', key, 'limit_key', 'handler')
  local lkey = s[1] or s[2]
  if not lkey or redis.call('SREM', limit_name(lkey, 'active'), job_id) == 0 then return end
  limit_wake(lkey, 1)
end

-- Move as many parked jobs of `lkey` back to their streams as it has room for now; when some
-- still wait on its rate, note when its window opens next (LIMITS_DUE).
local function limit_resume(lkey, now)
  local spec = redis.call('HGET', LIMITS, lkey)
  if not spec then return 0 end
  local room = limit_room(lkey, spec, now, 0, 0)
  local moved = room > 0 and limit_wake(lkey, room) or 0
  if redis.call('LLEN', limit_name(lkey, 'waiting')) > 0 then
    local _, due = limit_room(lkey, spec, now, moved, 0)
    if due then
      redis.call('ZADD', LIMITS_DUE, 'LT', due, lkey)
    end
  end
  return moved
end

-- Fair service: a job submitted with a limit_key (a tenant) enters its priority stream only
-- while its key has fewer than FAIR_AHEAD jobs there not yet started (FAIR: hash of
-- "<priority>:<key>" -> that count); the rest wait in line in the key's list
-- (<base>fair:<priority>:<key>), out of the streams. Each time one of its jobs leaves the
-- stream (starts, is parked or cancelled), the next in its line takes its place at the tail:
-- keys with work take turns in the stream, however many jobs each has waiting. The stats'
-- 'in_line' gauge counts the jobs in lines.
local FAIR = LIMIT_BASE .. 'fair'
local FAIR_AHEAD = 8
local fair_state = {fed = 0}

-- A keyed job counted in its stream left it (started, parked or cancelled): the next job in
-- its key's line takes its place at the tail of the stream.
local function fair_left(key, priority, lkey)
  local slot = priority .. ':' .. lkey
  redis.call('HDEL', key, 'fair')
  local nxt = redis.call('LPOP', FAIR .. ':' .. slot)
  if nxt then  -- takes the place left in the stream: the count stays
    redis.call('HINCRBY', STATS, 'in_line', -1)
    local entry = redis.call('XADD', stream_of(priority), '*', 'id', nxt)
    redis.call('HSET', JOB_PREFIX .. nxt, 'status', 'PENDING', 'entry', entry, 'fair', 'stream')
    fair_state.fed = fair_state.fed + 1
  elseif redis.call('HINCRBY', FAIR, slot, -1) <= 0 then
    redis.call('HDEL', FAIR, slot)
  end
end

-- Set `name` in a flat record read by HGETALL, `at` mapping each field to its value's index.
local function set_field(record, at, name, value)
  if at[name] then
    record[at[name]] = value
  else
    record[#record + 1] = name
    record[#record + 1] = value
  end
end

-- Start the job behind a delivered entry for `owner`: RUNNING, attempt + 1, its record
-- returned as {stream index, entry id, flat record}. Entries that are not a pending job of
-- ours are dead-lettered (foreign) or dropped (stale duplicates); those return nil.
-- The record is read once and updated in place: a started job costs one read, not two.
-- `lease_ms` is the starting pool's lease, recorded as the job's own (`lease`): reclaim.lua
-- takes the job over only once idle past it (0 records none: the reclaimer's lease applies).
local function start_entry(index, entry, fields, owner, now, lease_ms)
  local stream = STREAMS[index]
  local job_id = field(fields, 'id')
  if not job_id then
    bury_raw(stream, entry, fields, 'undecodable entry: it carries no job id', now)
    return nil
  end
  local key = JOB_PREFIX .. job_id
  local record = redis.call('HGETALL', key)
  if #record == 0 then
    bury_raw(stream, entry, fields, 'undecodable entry: no record for job ' .. job_id, now)
    return nil
  end
  local at = {}  -- where each field's value sits in the record
  for i = 1, #record, 2 do at[record[i]] = i + 1 end
  if record[at.status] ~= 'PENDING' or (at.entry and record[at.entry]) ~= entry then
    drop_entry(stream, entry)
    return nil
  end
  if at.fair and record[at.fair] == 'stream' then  -- its key's next takes its place
    fair_left(key, at.priority and record[at.priority] or '10', record[at.limit_key])
  end
  if limited() and not limit_admit(key, job_id, record[at.limit_key] or record[at.handler], now)
  then
    drop_entry(stream, entry)  -- parked under its limit key until there is room
    return nil
  end
  local attempt = (at.attempts and tonumber(record[at.attempts]) or 0) + 1
  if lease_ms > 0 then
    redis.call('HSET', key, 'status', 'RUNNING', 'owner', owner, 'started_at', now,
               'attempts', attempt, 'lease', lease_ms)
  else
    redis.call('HSET', key, 'status', 'RUNNING', 'owner', owner, 'started_at', now,
               'attempts', attempt)
    if at.lease then redis.call('HDEL', key, 'lease') end
  end
  emit('job.started', job_id, now, {'attempt', attempt, 'worker', owner})
  set_field(record, at, 'status', 'RUNNING')
  set_field(record, at, 'owner', owner)
  set_field(record, at, 'started_at', tostring(now))
  set_field(record, at, 'attempts', tostring(attempt))
  record[#record + 1] = 'id'  -- the id lives in the key, not in the record
  record[#record + 1] = job_id
  return {index, entry, record}
end
