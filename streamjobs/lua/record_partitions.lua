--[[ record_partitions: record a queue's partition count, once; every client then agrees on
where a job lives. KEYS 1 is the queue's partition count key (no hash tag: it belongs to no
partition), not the KEYS every other script takes.
Invariant: the count, once recorded, never changes (SET NX).
ARGV 4 the count to record when none is.
Returns the count recorded (this one, or the one recorded before).
Events: none.
]]
redis.call('SET', KEYS[1], ARGV[4], 'NX')
return tonumber(redis.call('GET', KEYS[1]))
