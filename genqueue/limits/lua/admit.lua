-- A limit key seen at enqueue: known already, or added to the known set while there are fewer than max
-- distinct keys (keys whose state expired are pruned first, see lim_prune_known). ARGV: known set, limit-key
-- prefix head, tail, key, max keys, now (ms), idle ttl (ms). Returns {1 | 0 (refused), known keys}.
local known, head, tail, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max, now, idle_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('SISMEMBER', known, key) == 1 then return {1, redis.call('SCARD', known)} end
local count = redis.call('SCARD', known)
if count >= max then count = lim_prune_known(known, head, tail) end
if count >= max then return {0, count} end
redis.call('SADD', known, key)
local cfg = head .. key .. tail .. 'cfg'
if redis.call('EXISTS', cfg) == 0 then  -- marks the key alive until its first job runs, or it idles out
  redis.call('HSET', cfg, 'admitted_ms', now)
  redis.call('PEXPIRE', cfg, idle_ms)
end
return {1, count + 1}
