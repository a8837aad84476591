--[[ heartbeat: register a worker pool as alive, with its workers' state, and forget pools
whose heartbeat stopped.
Invariant: a pool's record expires by itself when its heartbeats stop.
ARGV 4 pool id, 5 record TTL (ms), 6... record field, value.
Returns the server time (ms).
Events: none.
]]
local pool, ttl = ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local key = POOL_PREFIX .. pool
redis.call('HSET', key, 'heartbeat_at', now, unpack(ARGV, 6))
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', WORKERS, now, pool)
redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', now - ttl)
return now
