-- Move due jobs from RQ's ScheduledJobRegistry to the queue, atomically (RQ's own scheduler fetches,
-- then pipelines, with a TODO to make it atomic).
-- KEYS[1] rq:scheduled:<q>   KEYS[2] rq:queue:<q>   KEYS[3] rq:queues
-- ARGV[1] now (epoch s)   ARGV[2] batch size   ARGV[3] job key prefix   ARGV[4] enqueued_at (RQ format)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job_key = ARGV[3] .. id
  if redis.call('EXISTS', job_key) == 1 then
    redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', ARGV[4])
    redis.call('RPUSH', KEYS[2], id)
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
return moved
