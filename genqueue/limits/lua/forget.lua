-- `genqueue limits rm KEY`: remove everything of a key that nothing needs — its overrides, pause, breakers,
-- health, learned rate and counters; the key itself (and its place in the known set) when nothing of it is
-- in flight or parked. What is left is said: in-flight slots end with their jobs, parked jobs are woken.
-- ARGV: prefix, wake key, known set, limit key, now (ms).
-- Returns {overrides removed, pause ms that was left, breaker state that was, in flight, parked}.
local p, wake, known, key, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local overrides = redis.call('HDEL', p .. 'cfg', 'concurrency', 'rate_n', 'rate_period_ms', 'cooldown_ms',
                            'u_tokens_n', 'u_tokens_ms', 'u_images_n', 'u_images_ms', 'u_usd_n', 'u_usd_ms')
local pause = math.max(redis.call('PTTL', p .. 'pause'), 0)
local state = redis.call('HGET', p .. 'brk', 'state') or ''
redis.call('DEL', p .. 'pause', p .. 'brk', p .. 'health', p .. 'tbrk', p .. 'thealth', p .. 'learned', p .. 'obs',
           p .. 'calls')
local in_flight = redis.call('ZCOUNT', p .. 'slots', now, '+inf')
local parked = 0
for _, tenant in ipairs(redis.call('LRANGE', p .. 'ring', 0, -1)) do
  parked = parked + redis.call('LLEN', p .. 'parked:' .. tenant)
end
if in_flight == 0 and parked == 0 then
  redis.call('DEL', p .. 'cfg', p .. 'slots', p .. 'win', p .. 'ring', p .. 'stats', p .. 'deadline', p .. 'res',
             p .. 'resamt', p .. 'ut', p .. 'uw:tokens', p .. 'uw:images', p .. 'uw:usd')
  redis.call('SREM', known, key)
  redis.call('ZREM', wake, key)
else
  redis.call('ZADD', wake, now, key)
end
return {overrides, pause, state, in_flight, parked}
