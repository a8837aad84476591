--[[ ready_level: the highest-priority stream of this partition that holds entries never
delivered (1 critical ... 4 low), or 0 when none does. A worker reading many partitions asks
each, then starts jobs only from the partitions whose answer is the best one, and only up to
that stream (start.lua's ARGV 7): a lower-priority job never starts while a higher one waits
in any partition.
Invariant: with no entry left to deliver, every ready token stands for an entry already
delivered: the tokens are cleared (as start.lua does), so idle readers block until the next.
ARGV none of its own.
Returns the stream index, or 0.
Events: none.
]]
for index = 1, 4 do
  local newest = redis.call('XREVRANGE', STREAMS[index], '+', '-', 'COUNT', 1)[1]
  if newest then
    local delivered = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', STREAMS[index])) do
      if field(g, 'name') == GROUP then delivered = field(g, 'last-delivered-id') end
    end
    -- no group yet: start.lua's read creates no group but reports it missing, and the
    -- worker creates it again
    if not delivered or id_before(delivered, newest[1]) then return index end
  end
end
redis.call('DEL', READY)
return 0
