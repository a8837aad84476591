--[[ reap_consumers: remove from the consumer groups the consumers of worker pools that are
gone (their heartbeat record expired) and hold no entry, so that the names of crashed pools
do not pile up in the groups.
Invariant: a consumer holding entries is never removed (XGROUP DELCONSUMER would drop its
pending entries, and with them the leases reclaim.lua takes jobs back by); it goes on a later
pass, once reclaim has taken its entries over. A live pool keeps its heartbeat record, so it
is never touched; one whose record expired while it lived (Redis out of reach for long) and
that holds nothing loses only its name, which its next read creates again.
ARGV none of its own.
Returns the number of consumers removed (one per group it was in).
Events: none.
]]
local removed = 0
for index = 1, 4 do
  local consumers = redis.pcall('XINFO', 'CONSUMERS', STREAMS[index], GROUP)
  if type(consumers) == 'table' and not consumers.err then  -- no group: nothing to reap
    for _, c in ipairs(consumers) do
      local name = field(c, 'name')
      if field(c, 'pending') == 0 and redis.call('EXISTS', POOL_PREFIX .. name) == 0 then
        redis.call('XGROUP', 'DELCONSUMER', STREAMS[index], GROUP, name)
        removed = removed + 1
      end
    end
  end
end
return removed
