-- Move due jobs from RQ's ScheduledJobRegistry to their queue's lanes (tenants/fair.py), atomically (RQ's own
-- scheduler fetches, then pipelines, with a TODO to make it atomic); then top RQ's list up from the lanes —
-- also when nothing was due, so every tick feeds a queue whose last pop's worker died before its refill.
-- Included after tenants/lua/fair.lua.
-- KEYS[1] rq:scheduled:<q>   KEYS[2] rq:queue:<q>   KEYS[3] rq:queues
-- ARGV[1] now (epoch s)   ARGV[2] batch size   ARGV[3] job key prefix   ARGV[4] enqueued_at (RQ format)
-- ARGV[5..11] the fair context   ARGV[12] now (ms)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local c = fair_ctx(5)
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job_key = ARGV[3] .. id
  if redis.call('EXISTS', job_key) == 1 then
    redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', ARGV[4])
    local tenant, level = fair_route_of(job_key)
    fair_push(c, tenant, level, id, ARGV[12])
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
fair_refill(c)
return moved
