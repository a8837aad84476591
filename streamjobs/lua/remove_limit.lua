--[[ remove_limit: drop a limit key's limit; every job parked under it goes back to its
stream, and its slots and rate log are forgotten.
Invariant: no job stays parked under a key without a limit.
ARGV 4 limit key.
Returns 1 when the key had a limit, 0 when it had none.
Events: none.
]]
local lkey = ARGV[4]
local had = redis.call('HDEL', LIMITS, lkey)
limit_wake(lkey, redis.call('LLEN', limit_name(lkey, 'waiting')))
redis.call('DEL', limit_name(lkey, 'waiting'), limit_name(lkey, 'active'),
           limit_name(lkey, 'log'))
redis.call('ZREM', LIMITS_DUE, lkey)
return had
