-- `genqueue limits resume KEY`: end a key's pause and its breaker (the key's and its tenants'), at once, and
-- wake its parked jobs at the next tick. ARGV: prefix, wake key, limit key, now (ms).
-- Returns {pause ms that was left (0: none), the breaker's state that was ('' : closed), tenants' breakers}.
local p, wake, key, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local pause = redis.call('PTTL', p .. 'pause')
local state = redis.call('HGET', p .. 'brk', 'state') or ''
local tenants = redis.call('HLEN', p .. 'tbrk')
redis.call('DEL', p .. 'pause', p .. 'brk', p .. 'health', p .. 'tbrk', p .. 'thealth')
redis.call('ZADD', wake, now, key)
return {math.max(pause, 0), state, tenants}
