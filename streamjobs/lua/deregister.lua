--[[ deregister: remove a stopped worker pool from the registry.
ARGV 4 pool id.
Returns 1.
Events: none.
]]
local pool = ARGV[4]
redis.call('ZREM', WORKERS, pool)
redis.call('DEL', POOL_PREFIX .. pool)
return 1
