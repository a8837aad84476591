--[[ record_action: write to the events stream who did what from the dashboard, right after
the action's own transition ran.
ARGV 4 user ('anonymous' without basic auth), 5 action, 6 job id ('' for a bulk action),
7 outcome (what the transition answered, in words).
Returns 1.
Events: dashboard.action with user, action, outcome.
]]
emit('dashboard.action', ARGV[6], now_ms(), {'user', ARGV[4], 'action', ARGV[5], 'outcome', ARGV[7]})
return 1
