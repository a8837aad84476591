--[[ set_limit: set (or replace) the limit of a limit key: at most `concurrency` of its jobs
running at once, at most `rate` starts in any window of `window` ms (0 = no such bound).
Invariant: jobs parked under the key that now have room go back to their streams in the
same step (a raised limit frees them at once).
ARGV 4 limit key, 5 concurrency, 6 rate, 7 window (ms).
Returns the number of parked jobs moved back to their streams.
Events: none (job.queued is not emitted for a parked job moved back: it was queued once).
]]
local lkey = ARGV[4]
redis.call('HSET', LIMITS, lkey, ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
return limit_resume(lkey, now_ms())
