--[[ extend_lease: keep the leases of running jobs fresh by resetting their entries' idle
time; an entry another consumer took over is reported lost, never taken back.
Invariant: a lease is renewed only by the consumer that holds the entry.
ARGV 4 consumer, 5... triples of stream index, entry id, job id.
Returns the job ids whose lease this consumer no longer holds.
Events: none.
]]
local owner = ARGV[4]
local lost = {}
for i = 5, #ARGV, 3 do
  local stream, entry, job_id = STREAMS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2]
  local p = redis.call('XPENDING', stream, GROUP, entry, entry, 1)
  if p[1] and p[1][2] == owner then
    redis.call('XCLAIM', stream, GROUP, owner, 0, entry, 'JUSTID')
  else
    lost[#lost + 1] = job_id
  end
end
return lost
