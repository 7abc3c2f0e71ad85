-- Provider limits, as Lua functions the worker's claim, release and wake scripts include (never called
-- on their own: a script cannot call a script). Per limit key, under prefix P = genqueue:limit:{<key>}:
--   P..'cfg'     HASH   concurrency, rate_n, rate_period_ms (set by `genqueue limits set`; they win) and
--                       declared_* (the task's declaration, written by the claims that use them)
--   P..'slots'   ZSET   job id -> lease end (ms): who holds a concurrency slot
--   P..'win'     ZSET   "<job id>:<ms>" -> call time (ms): the sliding log of the rate's current window
--   P..'pause'   STRING PX: the key is paused (a 429's Retry-After, the breaker) until it expires
--   P..'ring'    LIST   tenants with parked jobs, round robin;  P..'parked:'..tenant  LIST  FIFO per tenant
--   P..'stats'   HASH   throttled, paused, parked, woken, pauses, rate_limited, held, breaker_opens, probes
--   P..'brk'     HASH   the breaker when not closed: state ('open' | 'half-open'), until (ms), cooldown (ms),
--                       probe (the job id let through to test the provider), probe_until (its lease end, ms)
--   P..'calls'   ZSET   with no rate set or declared: the calls let through in the last 10 s; P..'obs' HASH
--                       the last 429 burst; P..'learned' HASH the rate learned from them (n, period ms)
--   P..'health'  HASH   the last minute's outcomes in six 10-s buckets, slot i = bucket % 6: b<i> (bucket
--                       number), c<i> (calls answered), f<i> (of them TRANSIENT/TIMEOUT), r<i> (429s)
--   P..'thealth' HASH   the same per tenant: <tenant>|b<i>, <tenant>|c<i>, <tenant>|f<i>
--   P..'tbrk'    HASH   tenant -> until (ms): the tenant's own breaker, open while its calls alone fail
-- Unit limits (tokens, images, usd per window; cfg fields u_<unit>_n / u_<unit>_ms, declared_u_<unit>_*):
--   P..'res'     ZSET   job id -> lease end (ms): the running jobs' reservations (their estimates)
--   P..'resamt'  HASH   job id -> JSON {unit: amount} reserved
--   P..'uw:'..u  ZSET   "<job id>|<settle ms>|<amount>" -> settle time (ms): the settled usage of unit u in
--                       its sliding window (an entry counts from its settle time for one window)
--   P..'ut'      HASH   'r:'..u (reserved now), 'w:'..u (settled in the window): running totals of the two
-- and two global keys: WAKE (ZSET limit key -> when to look at its parked jobs again, ms) and KNOWN (SET).
-- A parked job's RQ status is 'deferred'; it is in exactly one place, its key's parked list.
-- PARKED (HASH queue -> parked jobs of that queue, all keys) lets a burst worker wait for them: it is
-- backend/keys.py's PARKED, spelled here because these functions are included in several scripts.
local PARKED = 'genqueue:parked'
-- DEADLINES (ZSET "<limit key>\n<tenant>\n<job id>" -> when the parked job's max_wait ends, ms): the parked jobs
-- to dead-letter `rate_limit_wait_exceeded` (worker/parked.py); backend/keys.py's LIMITS_DEADLINES. The
-- deadline is the job hash's gq_wait_until, set when it first parks, kept while it is woken and parked again,
-- dropped when it gets its slot.
local DEADLINES = 'genqueue:limits:deadlines'
local BUCKET_MS, BUCKETS = 10000, 6
local MAX_COOLDOWN_MS = 300000  -- a failed probe doubles the cooldown up to this
local IDLE_TTL_MS = 3600000  -- limits.rules.IDLE_TTL_S: an idle key's state expires after this
local MAX_PAUSE_MS = 86400000  -- limits.rules.MAX_WAIT_BOUND_S: the worker caps a pause at the job's max_wait

-- Count a stat outside a claim (a release, a wake: a claim refreshes the key's expiry itself, lim_keep_alive):
-- a stats hash this creates expires with the key's idle state, unless the key is overridden (cfg persisted).
local function lim_count(p, field, by)
  if redis.call('HINCRBY', p .. 'stats', field, by) == by and redis.call('PTTL', p .. 'stats') == -1
      and redis.call('PTTL', p .. 'cfg') ~= -1 then
    redis.call('PEXPIRE', p .. 'stats', IDLE_TTL_MS)
  end
end

-- the key's concurrency cap, rate n and period (ms): set (c1..c3) wins over declared (d1..d3) over the given
local function lim_config_of(p, c1, c2, c3, d1, d2, d3, cap, n, period)
  local function pick(a, b, d) return tonumber(a) or tonumber(b) or tonumber(d) or 0 end
  cap, n, period = pick(c1, d1, cap), pick(c2, d2, n), pick(c3, d3, period)
  if n == 0 then  -- no rate set or declared: the one learned from the provider's 429s, if any (lim_learn)
    local learned = redis.call('HMGET', p .. 'learned', 'n', 'period')
    n, period = tonumber(learned[1]) or 0, tonumber(learned[2]) or 0
  end
  return cap, n, period
end

local function lim_config(p, cap, n, period)
  local c = redis.call('HMGET', p .. 'cfg', 'concurrency', 'rate_n', 'rate_period_ms',
                       'declared_concurrency', 'declared_rate_n', 'declared_rate_period_ms')
  return lim_config_of(p, c[1], c[2], c[3], c[4], c[5], c[6], cap, n, period)
end

-- No rate set or declared: learn one from the provider's 429s. A 429 says "not before resume = now +
-- Retry-After"; the provider let `calls` calls through from `start` (the previous burst's resume time, or
-- 10 s ago, or the first call since, whichever is latest) until now: `calls` per (resume - start) is its rate as seen from here. One 429
-- alone teaches nothing (a stray 429 — a user's quota, an overloaded replica — is not a rate): the rate is
-- learned when a second 429 comes before the first one's resume time, i.e. calls kept hitting a full
-- window; and only the last 10 s count, so a learned rate is about what the key was really doing, never a
-- trickle averaged over minutes of pauses. It is enforced like a declared rate (the sliding log) for ten
-- of its periods (10 s to 2 min), then forgotten until the next burst re-learns it: the end of a pause is
-- no longer a race of every parked job into the next 429. (Lowering a learned rate by 10 % at every 429
-- through it was tried: with stray 429s, as in `make demo`, it ratchets down to a trickle; reverted.)
local LEARN_SPAN_MS = 10000
local function lim_learn(p, job_id, now, outcome, pause_ms)
  local c = redis.call('HMGET', p .. 'cfg', 'rate_n', 'declared_rate_n')
  if (tonumber(c[1]) or 0) > 0 or (tonumber(c[2]) or 0) > 0 or outcome == '' then return end
  local calls_log, obs = p .. 'calls', p .. 'obs'
  if outcome ~= 'limited' then
    redis.call('ZADD', calls_log, now, job_id .. ':' .. now)
    redis.call('ZREMRANGEBYSCORE', calls_log, '-inf', now - LEARN_SPAN_MS)
    redis.call('PEXPIRE', calls_log, 2 * LEARN_SPAN_MS)
    return
  end
  if pause_ms <= 0 then return end
  local o = redis.call('HMGET', obs, 'resume', 'start', 'calls')
  local resume = tonumber(o[1])
  if resume and now < resume then  -- the burst's second 429: learn from what its first one saw
    local calls, start = tonumber(o[3]) or 0, tonumber(o[2]) or 0
    if calls >= 1 and resume > start then
      local period = resume - start
      redis.call('HSET', p .. 'learned', 'n', calls, 'period', period)
      redis.call('PEXPIRE', p .. 'learned', math.max(10000, math.min(120000, 10 * period)))
    end
    return
  end
  local start = math.max(resume or 0, now - LEARN_SPAN_MS)
  local oldest = redis.call('ZRANGEBYSCORE', calls_log, start, now, 'WITHSCORES', 'LIMIT', 0, 1)
  if oldest[2] then start = math.max(start, tonumber(oldest[2])) end  -- a key just starting: from its first call
  local calls = redis.call('ZCOUNT', calls_log, start, now)
  redis.call('HSET', obs, 'resume', now + pause_ms, 'start', start, 'calls', calls)
  redis.call('PEXPIRE', obs, 600000)
end

-- the breaker's cooldown (ms; 0: no breaker for this key): `genqueue limits set --cooldown`, else the
-- task's declaration, else the default the caller passes
local function lim_cooldown(p, default)
  local c = redis.call('HMGET', p .. 'cfg', 'cooldown_ms', 'declared_cooldown_ms')
  return tonumber(c[1]) or tonumber(c[2]) or default
end

-- Unit limits: a job reserves its estimate in the start claim, beside its slot; the move that ends the
-- attempt settles it — the reservation is replaced by the actual amount, counted in a sliding window from
-- that moment — or, for a crash (the sweep) or an expired lease, drops it. A unit's room is its limit less
-- what is reserved and what was settled within the last window.
local UNITS = {'tokens', 'images', 'usd'}

-- The cfg fields of the unit limits, per unit in UNITS order: u_<u>_n, u_<u>_ms, declared_u_<u>_n, _ms. Spelled
-- out, and built only by the functions that read them: an EVAL script that includes this file runs its top level
-- on every call (the wake, the dead-letter release; the pop, claim and end too where a server cannot have them as
-- functions: backend/scripts.py), so nothing is computed there.
local function lim_unit_fields()
  return {'u_tokens_n', 'u_tokens_ms', 'declared_u_tokens_n', 'declared_u_tokens_ms',
          'u_images_n', 'u_images_ms', 'declared_u_images_n', 'declared_u_images_ms',
          'u_usd_n', 'u_usd_ms', 'declared_u_usd_n', 'declared_u_usd_ms'}
end

-- {unit = {n, ms}} from the values of lim_unit_fields() starting at c[at + 1] (set with `genqueue limits set` wins
-- over declared), and whether any unit is limited
local function lim_units_parse(c, at)
  local out, any = {}, false
  for i, u in ipairs(UNITS) do
    local j = at + 4 * (i - 1)
    local n, ms = tonumber(c[j + 1]), tonumber(c[j + 2])
    if not n or n <= 0 then n, ms = tonumber(c[j + 3]), tonumber(c[j + 4]) end
    if n and n > 0 and ms and ms > 0 then out[u] = {n, ms}; any = true end
  end
  return out, any
end

local function lim_units_cfg(p)
  return lim_units_parse(redis.call('HMGET', p .. 'cfg', unpack(lim_unit_fields())), 0)
end

local function lim_units_add(p, field, amount)
  local v = tonumber(redis.call('HINCRBYFLOAT', p .. 'ut', field, amount))
  if v < 1e-6 then redis.call('HSET', p .. 'ut', field, 0) end  -- float dust: never below zero
end

-- drop the job's reservation (if any): its amounts leave the reserved totals
local function lim_units_unreserve(p, job_id)
  local raw = redis.call('HGET', p .. 'resamt', job_id)
  redis.call('ZREM', p .. 'res', job_id)
  if not raw then return end
  redis.call('HDEL', p .. 'resamt', job_id)
  for u, amount in pairs(cjson.decode(raw)) do lim_units_add(p, 'r:' .. u, -tonumber(amount)) end
end

-- expired reservations (their holders are dead: the slot's lease) and settled usage older than its window
local function lim_units_prune(p, now, units)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'res', '-inf', now)) do lim_units_unreserve(p, id) end
  for u, lim in pairs(units) do
    local log = p .. 'uw:' .. u
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - lim[2])
    if #old > 0 then
      local freed = 0
      for _, member in ipairs(old) do freed = freed + (tonumber(string.match(member, '|([^|]*)$')) or 0) end
      redis.call('ZREMRANGEBYSCORE', log, '-inf', now - lim[2])
      lim_units_add(p, 'w:' .. u, -freed)
      if redis.call('ZCARD', log) == 0 then redis.call('HSET', p .. 'ut', 'w:' .. u, 0) end
    end
  end
end

-- how much of each limited unit is free now: {unit = room}
local function lim_units_room(p, units)
  local room = {}
  for u, lim in pairs(units) do
    local t = redis.call('HMGET', p .. 'ut', 'r:' .. u, 'w:' .. u)
    room[u] = lim[1] - (tonumber(t[1]) or 0) - (tonumber(t[2]) or 0)
  end
  return room
end

-- does an estimate ({unit = amount}) fit the room? (the unit that does not, or nil)
local function lim_units_misfit(room, est)
  for u, r in pairs(room) do
    local amount = tonumber(est[u]) or 0
    if amount > 0 and amount > r + 1e-9 then return u end
  end
  return nil
end

local function lim_units_reserve(p, job_id, now, lease_end, units, est)
  lim_units_unreserve(p, job_id)
  local held, any = {}, false
  for u, _ in pairs(units) do
    local amount = tonumber(est[u]) or 0
    if amount > 0 then held[u] = amount; any = true; lim_units_add(p, 'r:' .. u, amount) end
  end
  if any then
    redis.call('ZADD', p .. 'res', lease_end, job_id)
    redis.call('HSET', p .. 'resamt', job_id, cjson.encode(held))
    for _, name in ipairs({'res', 'resamt', 'ut'}) do  -- outlive the lease, then go with the key's idle state
      redis.call('PEXPIRE', p .. name, lease_end - now + IDLE_TTL_MS)
    end
  end
end

-- the move that ends an attempt: its reservation is replaced by what it spent (settle JSON {unit: amount};
-- '' only releases: a crash), counted from now for one window of each unit
local function lim_units_settle(p, job_id, now, settle)
  lim_units_unreserve(p, job_id)
  if settle == nil or settle == '' then return end
  local units = lim_units_cfg(p)
  local spent = cjson.decode(settle)
  for u, lim in pairs(units) do
    local amount = tonumber(spent[u]) or 0
    if amount > 0 then
      redis.call('ZADD', p .. 'uw:' .. u, now, job_id .. '|' .. now .. '|' .. amount)
      redis.call('PEXPIRE', p .. 'uw:' .. u, lim[2] + IDLE_TTL_MS)
      lim_units_add(p, 'w:' .. u, amount)
    end
  end
end

-- when room may next appear for units that are full (the oldest settled entry leaving its window), or nil
-- when only reservations fill them (their settle wakes the key)
local function lim_units_next(p, units)
  local at = nil
  for u, lim in pairs(units) do
    local first = redis.call('ZRANGE', p .. 'uw:' .. u, 0, 0, 'WITHSCORES')
    if first[2] then
      local w = tonumber(first[2]) + lim[2]
      if not at or w < at then at = w end
    end
  end
  return at
end

-- Everything of cfg a claim reads, in one HMGET: the overrides (`genqueue limits set`: they win), the task's
-- declared defaults (kept in Redis so the timed wake, which knows no task, honours them), the unit limits.
local function lim_claim_fields()
  local f = {'concurrency', 'rate_n', 'rate_period_ms', 'cooldown_ms',
             'declared_concurrency', 'declared_rate_n', 'declared_rate_period_ms', 'declared_cooldown_ms'}
  for _, u in ipairs(lim_unit_fields()) do f[#f + 1] = u end
  return f
end
local CLAIM_UNITS_AT = 8  -- the unit fields start after the eight above

-- Write the task's declaration where it differs from what cfg holds (a claim is the hot path: usually
-- nothing is written), updating `c` to match. declared_units: per unit, its n and window ms ('0' '0': none).
local function lim_declare(p, c, fields, cap, n, period, cooldown, declared_units)
  local changed = {}
  local mine = {cap, n, period, cooldown}
  for i = 1, 4 do
    if tonumber(c[4 + i]) ~= mine[i] then
      changed[#changed + 1] = fields[4 + i]; changed[#changed + 1] = mine[i]; c[4 + i] = tostring(mine[i])
    end
  end
  if declared_units then
    for i, u in ipairs(UNITS) do
      for k = 1, 2 do
        local at = CLAIM_UNITS_AT + 4 * (i - 1) + 2 + k
        local value = declared_units[2 * (i - 1) + k]
        if c[at] ~= value then
          changed[#changed + 1] = fields[at]; changed[#changed + 1] = value; c[at] = value
        end
      end
    end
  end
  if #changed > 0 then redis.call('HSET', p .. 'cfg', unpack(changed)) end
end

-- A key's state expires IDLE_TTL_MS after its last claim, unless it has an override (an overridden key never
-- idles out: limits/store.py persists cfg when one is set). Refreshed by each claim, so a key in use never
-- expires and nothing is kept for a key nobody uses; its known-set entry is pruned once it is gone.
local function lim_keep_alive(p, c)
  for i = 1, 4 do if c[i] then return end end
  for i = 1, #UNITS do
    local at = CLAIM_UNITS_AT + 4 * (i - 1)
    if c[at + 1] or c[at + 2] then return end
  end
  redis.call('PEXPIRE', p .. 'cfg', IDLE_TTL_MS)
  redis.call('PEXPIRE', p .. 'stats', IDLE_TTL_MS)
end

-- One answered call (outcome 'ok' | 'fail' | 'limited'), counted in the current 10-s bucket.
local function lim_health_add(p, now, outcome)
  local h, b = p .. 'health', math.floor(now / BUCKET_MS)
  local i = tostring(b % BUCKETS)
  if tonumber(redis.call('HGET', h, 'b' .. i)) ~= b then  -- a new bucket: the hash lives a minute past its start
    redis.call('HSET', h, 'b' .. i, b, 'c' .. i, 0, 'f' .. i, 0, 'r' .. i, 0)
    redis.call('PEXPIRE', h, BUCKET_MS * (BUCKETS + 1))
  end
  if outcome == 'limited' then
    redis.call('HINCRBY', h, 'r' .. i, 1)
  else
    redis.call('HINCRBY', h, 'c' .. i, 1)
    if outcome == 'fail' then redis.call('HINCRBY', h, 'f' .. i, 1) end
  end
end

-- The last minute: calls answered, of them failed (TRANSIENT/TIMEOUT), 429s.
local function lim_health(p, now)
  local b = math.floor(now / BUCKET_MS)
  local fields = {}
  for i = 0, BUCKETS - 1 do
    fields[#fields + 1] = 'b' .. i; fields[#fields + 1] = 'c' .. i
    fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = 'r' .. i
  end
  local v = redis.call('HMGET', p .. 'health', unpack(fields))
  local calls, fails, limited = 0, 0, 0
  for i = 0, BUCKETS - 1 do
    local bucket = tonumber(v[4 * i + 1])
    if bucket and bucket > b - BUCKETS then
      calls = calls + (tonumber(v[4 * i + 2]) or 0)
      fails = fails + (tonumber(v[4 * i + 3]) or 0)
      limited = limited + (tonumber(v[4 * i + 4]) or 0)
    end
  end
  return calls, fails, limited
end

-- One answered call of a tenant ('ok' | 'fail'), in the tenant's own buckets.
local function lim_tenant_add(p, tenant, now, outcome)
  local h, b = p .. 'thealth', math.floor(now / BUCKET_MS)
  local i, pre = tostring(b % BUCKETS), tenant .. '|'
  if tonumber(redis.call('HGET', h, pre .. 'b' .. i)) ~= b then  -- a new bucket (see lim_health_add)
    redis.call('HSET', h, pre .. 'b' .. i, b, pre .. 'c' .. i, 0, pre .. 'f' .. i, 0)
    redis.call('PEXPIRE', h, BUCKET_MS * (BUCKETS + 1))
  end
  redis.call('HINCRBY', h, pre .. 'c' .. i, 1)
  if outcome == 'fail' then redis.call('HINCRBY', h, pre .. 'f' .. i, 1) end
end

local function lim_tenant_health(p, tenant, now)
  local b, pre, fields = math.floor(now / BUCKET_MS), tenant .. '|', {}
  for i = 0, BUCKETS - 1 do
    fields[#fields + 1] = pre .. 'b' .. i; fields[#fields + 1] = pre .. 'c' .. i; fields[#fields + 1] = pre .. 'f' .. i
  end
  local v = redis.call('HMGET', p .. 'thealth', unpack(fields))
  local calls, fails = 0, 0
  for i = 0, BUCKETS - 1 do
    local bucket = tonumber(v[3 * i + 1])
    if bucket and bucket > b - BUCKETS then
      calls = calls + (tonumber(v[3 * i + 2]) or 0)
      fails = fails + (tonumber(v[3 * i + 3]) or 0)
    end
  end
  return calls, fails, fields
end

-- Whose storm a failure is (limits.rules.breaker_verdict is the same rule, tested with explicit numbers):
-- 'key' (everyone's jobs park), 'tenant' (only this tenant's), or ''. Jobs without a tenant ('-') are
-- counted as the key's, as before tenants were told apart.
local function lim_breaker_rule(calls, fails, tcalls, tfails, tenant, min_calls)
  local key_storm = calls >= min_calls and fails * 2 > calls
  if tenant == '-' or tenant == '' then
    if key_storm then return 'key' end
    return ''
  end
  local others_calls, others_fails = calls - tcalls, fails - tfails
  if key_storm and others_fails >= 1 and others_fails * 2 > others_calls then return 'key' end
  if tcalls >= min_calls and tfails * 2 > tcalls then return 'tenant' end
  return ''
end

-- until when (ms) the tenant's own breaker holds its jobs, or nil
local function lim_tenant_open(p, tenant, now)
  local untl = tonumber(redis.call('HGET', p .. 'tbrk', tenant))
  if untl and untl > now then return untl end
  return nil
end

-- The breaker as parked jobs see it: nil (closed, or open past its cooldown with no probe out: one job may
-- go), or the time (ms) until which the key's jobs must wait (open; or half-open with a live probe out).
local function lim_breaker_wait(p, now)
  local brk = redis.call('HMGET', p .. 'brk', 'state', 'until', 'probe', 'probe_until')
  if not brk[1] then return nil, false end
  local untl = tonumber(brk[2]) or 0
  if brk[1] == 'open' and now < untl then return untl, true end
  local probe_until = tonumber(brk[4]) or 0
  if brk[3] and probe_until > now then return probe_until, true, brk[3] end
  return nil, true
end

-- when a parked job of this key could next run (ms), or nil when only a release can tell
local function lim_next(p, now, cap, n, period, units_full)
  local pause = redis.call('PTTL', p .. 'pause')
  if pause > 0 then return now + pause end
  local held = lim_breaker_wait(p, now)
  if held then return held end
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
  if units_full then
    local units = lim_units_cfg(p)
    local w = lim_units_next(p, units)
    if w and (not at or w > at) then at = w end
  end
  return at
end

-- A parked job waits until `at` (ms, or an unknown while): the key's declared state, if it idles out at all,
-- outlives that wait by IDLE_TTL_MS (a key paused for hours keeps what its wake needs).
local function lim_outlive(p, at, now)
  local keep = math.max((at or now) - now, 0) + IDLE_TTL_MS
  local ttl = redis.call('PTTL', p .. 'cfg')  -- -1: overridden, kept for good; -2: nothing yet
  if ttl > 0 and ttl < keep then
    redis.call('PEXPIRE', p .. 'cfg', keep)
    redis.call('PEXPIRE', p .. 'stats', keep)
  end
end

local function lim_park(p, wake, key, job_id, job_key, tenant, at, now, max_wait_ms)
  local list = p .. 'parked:' .. tenant
  lim_outlive(p, at, now)
  if max_wait_ms and max_wait_ms > 0 then
    local deadline = tonumber(redis.call('HGET', job_key, 'gq_wait_until'))
    if not deadline then
      deadline = now + max_wait_ms
      redis.call('HSET', job_key, 'gq_wait_until', deadline)
    end
    redis.call('ZADD', DEADLINES, deadline, key .. '\n' .. tenant .. '\n' .. job_id)
  end
  if redis.call('RPUSH', list, job_id) == 1 then redis.call('RPUSH', p .. 'ring', tenant) end
  redis.call('HSET', job_key, 'status', 'deferred', 'genqueue_parked', list)  -- where a cancel finds it
  redis.call('HINCRBY', PARKED, redis.call('HGET', job_key, 'origin') or '', 1)
  redis.call('HINCRBY', p .. 'stats', 'parked', 1)
  if at then redis.call('ZADD', wake, 'LT', at, key) end
end

local function lim_prune(p, now, period)
  redis.call('ZREMRANGEBYSCORE', p .. 'slots', '-inf', now)  -- expired leases: their holders are dead
  if period > 0 then redis.call('ZREMRANGEBYSCORE', p .. 'win', '-inf', now - period) end
end

-- Take a slot and a rate token for job_id, or park it. Returns nil (acquired) or {why, wake_at}.
-- An open breaker parks the key's jobs until its cooldown ends; then the first job that gets a slot and
-- a token becomes the probe (half-open), and the others park until the probe's release tells.
local function lim_acquire(p, wake, known, key, job_id, job_key, tenant, now, cap, n, period, lease, cooldown,
                           max_wait_ms, est_json, declared_units)
  redis.call('SADD', known, key)
  if est_json and est_json ~= '' then redis.call('HSET', job_key, 'gq_estimate', est_json) end  -- read by a wake
  local fields = lim_claim_fields()
  local c = redis.call('HMGET', p .. 'cfg', unpack(fields))
  lim_declare(p, c, fields, cap, n, period, cooldown, declared_units)
  lim_keep_alive(p, c)
  cap, n, period = lim_config_of(p, c[1], c[2], c[3], c[5], c[6], c[7], cap, n, period)
  -- a pause, a tenant breaker or the key's breaker: usually none of them, one EXISTS says so
  local held, broken, prober = nil, false, nil
  if redis.call('EXISTS', p .. 'pause', p .. 'tbrk', p .. 'brk') > 0 then
    local pause = redis.call('PTTL', p .. 'pause')
    if pause > 0 then
      lim_park(p, wake, key, job_id, job_key, tenant, now + pause, now, max_wait_ms)
      redis.call('HINCRBY', p .. 'stats', 'paused', 1)
      return {'paused', now + pause}
    end
    local tenant_until = lim_tenant_open(p, tenant, now)
    if tenant_until then  -- its own calls failed: its jobs wait, never the key's probe
      lim_park(p, wake, key, job_id, job_key, tenant, tenant_until, now, max_wait_ms)
      redis.call('HINCRBY', p .. 'stats', 'tenant_held', 1)
      return {'tenant_breaker', tenant_until}
    end
    held, broken, prober = lim_breaker_wait(p, now)
    if held and prober ~= job_id then
      lim_park(p, wake, key, job_id, job_key, tenant, held, now, max_wait_ms)
      redis.call('HINCRBY', p .. 'stats', 'held', 1)
      return {'breaker', held}
    end
  end
  lim_prune(p, now, period)
  if (cap > 0 and redis.call('ZCARD', p .. 'slots') >= cap) or (n > 0 and redis.call('ZCARD', p .. 'win') >= n) then
    local at = lim_next(p, now, cap, n, period)
    lim_park(p, wake, key, job_id, job_key, tenant, at, now, max_wait_ms)
    redis.call('HINCRBY', p .. 'stats', 'throttled', 1)
    return {'throttled', at or 0}
  end
  local units, limited = lim_units_parse(c, CLAIM_UNITS_AT)
  if limited then
    local est = {}
    if est_json and est_json ~= '' then est = cjson.decode(est_json) end
    lim_units_prune(p, now, units)
    local misfit = lim_units_misfit(lim_units_room(p, units), est)
    if misfit then  -- its estimate does not fit the window: it waits for settled usage to leave it
      local at = lim_next(p, now, cap, n, period, true)
      lim_park(p, wake, key, job_id, job_key, tenant, at, now, max_wait_ms)
      redis.call('HINCRBY', p .. 'stats', 'unit_throttled', 1)
      return {'units:' .. misfit, at or 0}
    end
    lim_units_reserve(p, job_id, now, now + lease, units, est)
  end
  if cap > 0 then redis.call('ZADD', p .. 'slots', now + lease, job_id) end
  if n > 0 then  -- the window's entries matter for one period: so does the log, once the key is unused
    redis.call('ZADD', p .. 'win', now, job_id .. ':' .. now)
    redis.call('PEXPIRE', p .. 'win', period)
  end
  redis.call('HDEL', job_key, 'gq_wait_until')
  if broken then
    redis.call('HSET', p .. 'brk', 'state', 'half-open', 'probe', job_id, 'probe_until', now + lease)
    redis.call('HINCRBY', p .. 'stats', 'probes', 1)
  end
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
  local held, broken = lim_breaker_wait(p, now)
  if held then
    redis.call('ZADD', wake, held, key)
    return 0
  end
  lim_prune(p, now, period)
  local free = max
  if broken then free = 1 end  -- past the cooldown: one job goes, to probe
  if cap > 0 then free = math.min(free, cap - redis.call('ZCARD', p .. 'slots')) end
  if n > 0 then free = math.min(free, n - redis.call('ZCARD', p .. 'win')) end
  local units, limited = lim_units_cfg(p)
  local room, units_full = nil, false
  if limited then
    lim_units_prune(p, now, units)
    room = lim_units_room(p, units)
  end
  local woken, skipped, later = 0, 0, nil
  while woken < free and skipped < redis.call('LLEN', p .. 'ring') and not units_full do
    local tenant = redis.call('LPOP', p .. 'ring')
    if not tenant then break end
    local list = p .. 'parked:' .. tenant
    local tenant_until = lim_tenant_open(p, tenant, now)
    if tenant_until then  -- its own breaker holds its jobs: the others go first (and a probe is never its)
      redis.call('RPUSH', p .. 'ring', tenant)
      skipped = skipped + 1
      if not later or tenant_until < later then later = tenant_until end
    elseif room and lim_units_misfit(room, cjson.decode(
        redis.call('HGET', job_prefix .. (redis.call('LINDEX', list, 0) or ''), 'gq_estimate') or '{}')) then
      redis.call('LPUSH', p .. 'ring', tenant)  -- its turn is kept: it goes first once the window has room
      units_full = true
    else
    skipped = 0
    local id = redis.call('LPOP', list)
    if redis.call('LLEN', list) > 0 then redis.call('RPUSH', p .. 'ring', tenant) end
    if id then
      redis.call('ZREM', DEADLINES, key .. '\n' .. tenant .. '\n' .. id)
      local job_key = job_prefix .. id
      local origin = redis.call('HGET', job_key, 'origin')
      if origin then redis.call('HINCRBY', PARKED, origin, -1) end
      if origin and redis.call('HGET', job_key, 'status') == 'deferred' then
        redis.call('HSET', job_key, 'status', 'queued')
        if room then  -- what it will reserve is no room for the next one woken now
          local est = cjson.decode(redis.call('HGET', job_key, 'gq_estimate') or '{}')
          for u, r in pairs(room) do room[u] = r - (tonumber(est[u]) or 0) end
        end
        redis.call('LPUSH', queue_prefix .. origin, id)  -- waited longest: runs next
        local ev = 'genqueue:events:' .. id  -- backend/events.py's stream (keys.EVENTS_PREFIX), spelled here
        redis.call('XADD', ev, 'MAXLEN', '~', 1000, '*', 'e', 'woken', 'j', id, 'd', cjson.encode({key = key}))
        redis.call('EXPIRE', ev, 604800)
        woken = woken + 1
      end
    end
    end
  end
  if woken > 0 then lim_count(p, 'woken', woken) end
  if redis.call('LLEN', p .. 'ring') > 0 then
    local at = lim_next(p, now, cap, n, period, limited)
    if broken and woken > 0 then at = now + 1000 end  -- the probe's release wakes the rest; this is the fallback
    if later and (not at or later < at) then at = later end
    redis.call('ZADD', wake, 'LT', at or (now + 1000), key)
  end
  return woken
end

-- The breaker after one job's outcome: 'ok' or 'answered' (the provider answered: a success, a permanent
-- error), 'fail' (TRANSIENT/TIMEOUT), 'limited' (a 429), '' (not the provider's doing: a crash). More than
-- half of at least min_calls answered calls failing within the last minute opens it for the cooldown; the
-- probe's outcome closes it (anything but 'fail') or opens it again for twice as long. Returns the event
-- for the worker's one log line: '' or 'opened:<failed>:<calls>:<cooldown ms>', 'closed', 'reopened:…'.
local function lim_breaker_after(p, wake, key, job_id, now, outcome, min_calls, default_cooldown, tenant)
  if outcome == '' then
    if redis.call('HGET', p .. 'brk', 'probe') == job_id then redis.call('HDEL', p .. 'brk', 'probe', 'probe_until') end
    return ''
  end
  local counted = outcome
  if outcome == 'answered' then counted = 'ok' end
  lim_health_add(p, now, counted)
  -- the tenant's own buckets; jobs without a tenant ('-') are the key's (lim_breaker_rule never reads theirs)
  if counted ~= 'limited' and tenant ~= '-' and tenant ~= '' then lim_tenant_add(p, tenant, now, counted) end
  local brk = redis.call('HMGET', p .. 'brk', 'state', 'probe', 'cooldown')
  if brk[1] then
    if brk[1] ~= 'half-open' or brk[2] ~= job_id then return '' end
    if outcome == 'fail' then
      local cooldown = math.min((tonumber(brk[3]) or default_cooldown) * 2, MAX_COOLDOWN_MS)
      redis.call('HSET', p .. 'brk', 'state', 'open', 'until', now + cooldown, 'cooldown', cooldown)
      redis.call('HDEL', p .. 'brk', 'probe', 'probe_until')
      redis.call('ZADD', wake, now + cooldown, key)
      return 'reopened:1:1:' .. cooldown
    end
    redis.call('DEL', p .. 'brk', p .. 'health')
    return 'closed'
  end
  if outcome ~= 'fail' then return '' end
  local cooldown = lim_cooldown(p, default_cooldown)
  if cooldown <= 0 then return '' end
  local calls, fails = lim_health(p, now)
  local tcalls, tfails, tfields = lim_tenant_health(p, tenant, now)
  local verdict = lim_breaker_rule(calls, fails, tcalls, tfails, tenant, min_calls)
  if verdict == 'tenant' then
    if lim_tenant_open(p, tenant, now) then return '' end
    redis.call('HSET', p .. 'tbrk', tenant, now + cooldown)
    if redis.call('PTTL', p .. 'tbrk') < cooldown then redis.call('PEXPIRE', p .. 'tbrk', cooldown) end
    redis.call('HDEL', p .. 'thealth', unpack(tfields))  -- its next storm is counted afresh
    lim_count(p, 'tenant_breaker_opens', 1)
    redis.call('ZADD', wake, 'LT', now + cooldown, key)
    return 'tenant_opened:' .. tfails .. ':' .. tcalls .. ':' .. cooldown
  end
  if verdict ~= 'key' then return '' end
  redis.call('HSET', p .. 'brk', 'state', 'open', 'until', now + cooldown, 'cooldown', cooldown)
  lim_count(p, 'breaker_opens', 1)
  redis.call('ZADD', wake, now + cooldown, key)
  return 'opened:' .. fails .. ':' .. calls .. ':' .. cooldown
end

-- A move's release: give the slot back, let the breaker count the outcome, pause the key for pause_ms (a
-- 429's Retry-After, or reset headers at zero) and wake parked jobs if that freed room (all the room a
-- closing breaker frees, else one). Returns the breaker's event ('' if none).
local function lim_release_core(p, wake, key, job_id, now, pause_ms, job_prefix, queue_prefix, outcome, min_calls,
                                default_cooldown, tenant, settle)
  redis.call('ZREM', p .. 'slots', job_id)
  lim_units_settle(p, job_id, now, settle)
  if pause_ms > MAX_PAUSE_MS then pause_ms = MAX_PAUSE_MS end
  lim_learn(p, job_id, now, outcome, pause_ms)
  local event = lim_breaker_after(p, wake, key, job_id, now, outcome, min_calls, default_cooldown, tenant)
  if pause_ms > 0 then
    if outcome == 'limited' then lim_count(p, 'rate_limited', 1) end
    if redis.call('PTTL', p .. 'pause') < pause_ms then
      redis.call('SET', p .. 'pause', '1', 'PX', pause_ms)
      lim_count(p, 'pauses', 1)
      redis.call('ZADD', wake, now + pause_ms, key)
    end
    return event
  end
  if event ~= '' and event ~= 'closed' and string.sub(event, 1, 7) ~= 'tenant_' then return event end
  local max = 1
  if event == 'closed' then max = 100 end
  if redis.call('EXISTS', p .. 'ut') == 1 then max = math.max(max, 10) end  -- a settle may free room for several
  lim_wake(p, wake, key, now, max, job_prefix, queue_prefix)
  return event
end

local function lim_release(p, wake, key, job_id, now, pause_ms, job_prefix, queue_prefix, outcome, min_calls,
                           default_cooldown, tenant, settle)
  if tenant == nil or tenant == '' then tenant = '-' end
  return lim_release_core(p, wake, key, job_id, now, pause_ms, job_prefix, queue_prefix, outcome, min_calls,
                          default_cooldown, tenant, settle)
end
