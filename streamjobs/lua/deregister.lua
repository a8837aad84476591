--[[ deregister: remove a stopped worker pool from the registry, with its control list.
ARGV 4 pool id.
Returns 1.
Events: none.
]]
local pool = ARGV[4]
redis.call('ZREM', WORKERS, pool)
redis.call('DEL', POOL_PREFIX .. pool, POOL_PREFIX .. pool .. ':control')
return 1
