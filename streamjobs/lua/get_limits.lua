--[[ get_limits: every limit of this partition with what it holds now (reads only).
ARGV none of its own.
Returns a list of {limit key, concurrency, rate, window (ms), running, waiting, starts in
the window, when the window next opens (ms, -1 = not rate-bound)}.
]]
local now = now_ms()
local out = {}
local flat = redis.call('HGETALL', LIMITS)
for i = 1, #flat, 2 do
  local lkey = flat[i]
  local c, r, w = limit_spec(flat[i + 1])
  local starts, opens = 0, -1
  if r > 0 then
    starts = redis.call('ZCOUNT', limit_name(lkey, 'log'), '(' .. (now - w), '+inf')
    local due = redis.call('ZSCORE', LIMITS_DUE, lkey)
    if due then opens = tonumber(due) end
  end
  out[#out + 1] = {lkey, c, r, w, redis.call('SCARD', limit_name(lkey, 'active')),
                   redis.call('LLEN', limit_name(lkey, 'waiting')), starts, opens}
end
return out
