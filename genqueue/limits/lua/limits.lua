-- Provider limits, as Lua functions the worker's claim, release and wake scripts include (never called
-- on their own: a script cannot call a script). Per limit key, under prefix P = genqueue:limit:{<key>}:
--   P..'cfg'     HASH   concurrency, rate_n, rate_period_ms (set by `genqueue limits set`; they win) and
--                       declared_* (the task's declaration, written by the claims that use them)
--   P..'slots'   ZSET   job id -> lease end (ms): who holds a concurrency slot
--   P..'win'     ZSET   "<job id>:<ms>" -> call time (ms): the sliding log of the rate's current window
--   P..'pause'   STRING PX: the key is paused (a 429's Retry-After, the breaker) until it expires
--   P..'ring'    LIST   tenants with parked jobs, round robin;  P..'parked:'..tenant  LIST  FIFO per tenant
--   P..'stats'   HASH   throttled, paused, parked, woken, pauses, rate_limited (totals)
-- and two global keys: WAKE (ZSET limit key -> when to look at its parked jobs again, ms) and KNOWN (SET).
-- A parked job's RQ status is 'deferred'; it is in exactly one place, its key's parked list.
-- PARKED (HASH queue -> parked jobs of that queue, all keys) lets a burst worker wait for them: it is
-- backend/keys.py's PARKED, spelled here because these functions are included in several scripts.
local PARKED = 'genqueue:parked'

local function lim_config(p, cap, n, period)
  local c = redis.call('HMGET', p .. 'cfg', 'concurrency', 'rate_n', 'rate_period_ms',
                       'declared_concurrency', 'declared_rate_n', 'declared_rate_period_ms')
  local function pick(a, b, d) return tonumber(a) or tonumber(b) or tonumber(d) or 0 end
  return pick(c[1], c[4], cap), pick(c[2], c[5], n), pick(c[3], c[6], period)
end

local function lim_declare(p, cap, n, period)
  -- the task's declared defaults, kept in Redis so the timed wake (which knows no task) honours them
  redis.call('HSET', p .. 'cfg', 'declared_concurrency', cap, 'declared_rate_n', n, 'declared_rate_period_ms', period)
end

-- when a parked job of this key could next run (ms), or nil when only a release can tell
local function lim_next(p, now, cap, n, period)
  local pause = redis.call('PTTL', p .. 'pause')
  if pause > 0 then return now + pause end
  local at = nil
  if cap > 0 and redis.call('ZCARD', p .. 'slots') >= cap then
    local first = redis.call('ZRANGE', p .. 'slots', 0, 0, 'WITHSCORES')
    if first[2] then at = tonumber(first[2]) end
  end
  if n > 0 and redis.call('ZCARD', p .. 'win') >= n then
    local first = redis.call('ZRANGE', p .. 'win', 0, 0, 'WITHSCORES')
    if first[2] then
      local w = tonumber(first[2]) + period
      if not at or w > at then at = w end
    end
  end
  return at
end

local function lim_park(p, wake, key, job_id, job_key, tenant, at)
  local list = p .. 'parked:' .. tenant
  if redis.call('RPUSH', list, job_id) == 1 then redis.call('RPUSH', p .. 'ring', tenant) end
  redis.call('HSET', job_key, 'status', 'deferred')
  redis.call('HINCRBY', PARKED, redis.call('HGET', job_key, 'origin') or '', 1)
  redis.call('HINCRBY', p .. 'stats', 'parked', 1)
  if at then redis.call('ZADD', wake, 'LT', at, key) end
end

local function lim_prune(p, now, period)
  redis.call('ZREMRANGEBYSCORE', p .. 'slots', '-inf', now)  -- expired leases: their holders are dead
  if period > 0 then redis.call('ZREMRANGEBYSCORE', p .. 'win', '-inf', now - period) end
end

-- Take a slot and a rate token for job_id, or park it. Returns nil (acquired) or {why, wake_at}.
local function lim_acquire(p, wake, known, key, job_id, job_key, tenant, now, cap, n, period, lease)
  redis.call('SADD', known, key)
  lim_declare(p, cap, n, period)
  cap, n, period = lim_config(p, cap, n, period)
  local pause = redis.call('PTTL', p .. 'pause')
  if pause > 0 then
    lim_park(p, wake, key, job_id, job_key, tenant, now + pause)
    redis.call('HINCRBY', p .. 'stats', 'paused', 1)
    return {'paused', now + pause}
  end
  lim_prune(p, now, period)
  if (cap > 0 and redis.call('ZCARD', p .. 'slots') >= cap) or (n > 0 and redis.call('ZCARD', p .. 'win') >= n) then
    local at = lim_next(p, now, cap, n, period)
    lim_park(p, wake, key, job_id, job_key, tenant, at)
    redis.call('HINCRBY', p .. 'stats', 'throttled', 1)
    return {'throttled', at or 0}
  end
  if cap > 0 then redis.call('ZADD', p .. 'slots', now + lease, job_id) end
  if n > 0 then redis.call('ZADD', p .. 'win', now, job_id .. ':' .. now) end
  return nil
end

-- Move up to `max` parked jobs back to the head of their queues, round robin across tenants, as far as
-- the key's limits allow now; re-arm the timer for what stays parked. Returns how many were woken.
local function lim_wake(p, wake, key, now, max, job_prefix, queue_prefix)
  local cap, n, period = lim_config(p, 0, 0, 0)
  redis.call('ZREM', wake, key)
  if redis.call('LLEN', p .. 'ring') == 0 then return 0 end
  local pause = redis.call('PTTL', p .. 'pause')
  if pause > 0 then
    redis.call('ZADD', wake, now + pause, key)
    return 0
  end
  lim_prune(p, now, period)
  local free = max
  if cap > 0 then free = math.min(free, cap - redis.call('ZCARD', p .. 'slots')) end
  if n > 0 then free = math.min(free, n - redis.call('ZCARD', p .. 'win')) end
  local woken = 0
  while woken < free do
    local tenant = redis.call('LPOP', p .. 'ring')
    if not tenant then break end
    local list = p .. 'parked:' .. tenant
    local id = redis.call('LPOP', list)
    if redis.call('LLEN', list) > 0 then redis.call('RPUSH', p .. 'ring', tenant) end
    if id then
      local job_key = job_prefix .. id
      local origin = redis.call('HGET', job_key, 'origin')
      if origin then redis.call('HINCRBY', PARKED, origin, -1) end
      if origin and redis.call('HGET', job_key, 'status') == 'deferred' then
        redis.call('HSET', job_key, 'status', 'queued')
        redis.call('LPUSH', queue_prefix .. origin, id)  -- waited longest: runs next
        woken = woken + 1
      end
    end
  end
  if woken > 0 then redis.call('HINCRBY', p .. 'stats', 'woken', woken) end
  if redis.call('LLEN', p .. 'ring') > 0 then
    local at = lim_next(p, now, cap, n, period)
    redis.call('ZADD', wake, 'LT', at or (now + 1000), key)
  end
  return woken
end

-- A move's release: give the slot back, pause the key for pause_ms (a 429's Retry-After) and wake one
-- parked job if that freed room.
local function lim_release(p, wake, key, job_id, now, pause_ms, job_prefix, queue_prefix)
  redis.call('ZREM', p .. 'slots', job_id)
  if pause_ms > 0 then
    redis.call('HINCRBY', p .. 'stats', 'rate_limited', 1)
    if redis.call('PTTL', p .. 'pause') < pause_ms then
      redis.call('SET', p .. 'pause', '1', 'PX', pause_ms)
      redis.call('HINCRBY', p .. 'stats', 'pauses', 1)
      redis.call('ZADD', wake, now + pause_ms, key)
    end
    return 0
  end
  return lim_wake(p, wake, key, now, 1, job_prefix, queue_prefix)
end
