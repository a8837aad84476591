--[[ dashboard_secret: the secret every dashboard process of a queue signs its CSRF tokens
with (KEYS[14]); the first process to ask stores the one it proposes, the rest adopt it, so
a form served by one process posts fine to another.
ARGV 4 a fresh random secret, stored only when none is.
Returns the secret in force.
]]
redis.call('SET', KEYS[14], ARGV[4], 'NX')
return redis.call('GET', KEYS[14])
