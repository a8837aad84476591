--[[ purge_dead_letters: delete up to `limit` of the oldest dead letters for good, each with
its job record (when the record still belongs to that dead letter).
Invariant: a purged job leaves no trace a retry could bring back: its dead-letter entry and
its DEAD_LETTER record go in the same step.
ARGV 4 limit (>= 1).
Returns {purged, dead letters left}.
Events: job.purged per job (id '' for a foreign entry kept from another producer).
]]
local limit = tonumber(ARGV[4])
local now = now_ms()
local purged = 0
for _, e in ipairs(redis.call('XRANGE', DEAD, '-', '+', 'COUNT', limit)) do
  local job_id = field(e[2], 'id') or ''
  if job_id ~= '' then
    local key = JOB_PREFIX .. job_id
    if redis.call('HGET', key, 'dead_entry') == e[1] then redis.call('DEL', key) end
  end
  redis.call('XDEL', DEAD, e[1])
  emit('job.purged', job_id, now, {'entry', e[1]})
  purged = purged + 1
end
return {purged, redis.call('XLEN', DEAD)}
