--[[ record_partitions: record a queue's partition count, once; every client then agrees on
where a job lives. KEYS 1 is the queue's partition count key (no hash tag: it belongs to no
partition), not the KEYS every other script takes.
Invariant: the count, once recorded, never changes. It is read first and written only when
missing, so that a Redis out of memory (which refuses every write) still lets clients of a
queue it knows connect.
ARGV 4 the count to record when none is.
Returns the count recorded (this one, or the one recorded before).
Events: none.
]]
local recorded = redis.call('GET', KEYS[1])
if recorded then return tonumber(recorded) end
redis.call('SET', KEYS[1], ARGV[4])
return tonumber(ARGV[4])
