--[[ heartbeat: register a worker pool as alive, with its workers' state, and forget pools
whose heartbeat stopped.
Invariant: a pool's record expires by itself when its heartbeats stop. The pruning comes
first: a write Redis allows when out of memory, after which it lets the script finish, so a
pool still registers on a full Redis (and goes on draining it).
ARGV 4 pool id, 5 record TTL (ms), 6... record field, value.
Returns the server time (ms).
Events: none.
]]
local pool, ttl = ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local key = POOL_PREFIX .. pool
redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', now - ttl)
redis.call('HSET', key, 'heartbeat_at', now, unpack(ARGV, 6))
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', WORKERS, now, pool)
return now
