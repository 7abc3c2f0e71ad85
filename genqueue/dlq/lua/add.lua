-- Add (or replace) one DLQ entry, prune index members past retention, enforce the size cap.
-- KEYS[1] entry key   KEYS[2] all index   KEYS[3] stats hash   KEYS[4..] the entry's other indexes
-- ARGV[1] job id   ARGV[2] entry JSON   ARGV[3] score (failed_at, epoch s)   ARGV[4] TTL s
-- ARGV[5] retention cutoff score   ARGV[6] size cap   ARGV[7] key prefix   ARGV[8] stats counter to bump
-- Returns {replaced (0/1), expired pruned, evicted}
local prefix = ARGV[7]

local old = redis.call('GET', KEYS[1])
if old then
  -- Never silently: an entry replaced (import --overwrite, audited; or a leftover) is counted.
  for _, k in ipairs(index_keys(old)) do redis.call('ZREM', k, ARGV[1]) end
  redis.call('HINCRBY', KEYS[3], 'replaced', 1)
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
local cutoff = '(' .. ARGV[5]
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for i = 4, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff)
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
end
redis.call('HINCRBY', KEYS[3], ARGV[8], 1)
if expired > 0 then
  redis.call('HINCRBY', KEYS[3], 'expired', expired)
end
local evicted = 0
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over > 0 then
  local victims = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  for _, id in ipairs(victims) do
    -- undeclared keys, but all share KEYS[1]'s {queue} hash tag and therefore its cluster slot
    local key = prefix .. 'e:' .. id
    local raw = redis.call('GET', key)
    if raw then
      for _, k in ipairs(index_keys(raw)) do redis.call('ZREM', k, id) end
      redis.call('DEL', key)
    end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('HINCRBY', KEYS[3], 'evicted', over)
  evicted = over
end
return {old and 1 or 0, expired, evicted}
