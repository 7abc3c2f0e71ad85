-- Add (or replace) one DLQ entry, prune index members past retention, enforce the size cap.
-- KEYS[1] entry key   KEYS[2] all index   KEYS[3] stats hash   KEYS[4..] the entry's other indexes
-- ARGV[1] job id   ARGV[2] entry JSON   ARGV[3] score (failed_at, epoch s)   ARGV[4] TTL s
-- ARGV[5] retention cutoff score   ARGV[6] size cap   ARGV[7] entry key prefix (for evictions)
-- Returns {replaced (0/1), expired pruned, evicted}
local replaced = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
local cutoff = '(' .. ARGV[5]
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for i = 4, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff)
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
end
redis.call('HINCRBY', KEYS[3], 'dead_lettered', 1)
if expired > 0 then
  redis.call('HINCRBY', KEYS[3], 'expired', expired)
end
local evicted = 0
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over > 0 then
  local victims = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  for _, id in ipairs(victims) do
    -- undeclared key, but it shares KEYS[1]'s {queue} hash tag and therefore its cluster slot
    redis.call('DEL', ARGV[7] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('HINCRBY', KEYS[3], 'evicted', over)
  evicted = over
end
return {replaced, expired, evicted}
