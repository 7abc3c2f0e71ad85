-- Fair and priority scheduling of one queue: a library, included by the scripts that push to a queue or pop
-- from it (tenants/fair.py says why the lanes sit in front of RQ's queue list). Under fp = genqueue:fair:{q}:
--   lane:<priority>:<tenant>  LIST of '<enqueued ms>|<job id>', oldest first
--   ring:<priority>           LIST of the tenants whose lane at that priority has jobs (in it iff it has)
--   used:<priority>           HASH tenant -> jobs taken in its current turn
--   n                         HASH '*' and 't:<tenant>' -> jobs waiting in lanes
--   at                        HASH job id -> its lane entry's time, while it waits (a cancel's way in)
-- A context `c` is {fp, weights hash, queue list, buffer, offset high, offset normal, offset low}.
-- Every step is O(1) whatever the number of tenants: it looks at the head of three rings and one lane each.

local FAIR_LEVELS = {'high', 'normal', 'low'}

local function fair_ctx(from)  -- ARGV[from .. from + 6]
  return {fp = ARGV[from], weights = ARGV[from + 1], queue = ARGV[from + 2], buffer = tonumber(ARGV[from + 3]),
          offset = {high = tonumber(ARGV[from + 4]), normal = tonumber(ARGV[from + 5]),
                    low = tonumber(ARGV[from + 6])}}
end

local function fair_push(c, tenant, level, id, now_ms)
  local n = redis.call('RPUSH', c.fp .. 'lane:' .. level .. ':' .. tenant, now_ms .. '|' .. id)
  redis.call('HSET', c.fp .. 'at', id, now_ms)  -- its entry's time: a cancel finds the entry by it
  if n == 1 then redis.call('RPUSH', c.fp .. 'ring:' .. level, tenant) end
  redis.call('HINCRBY', c.fp .. 'n', '*', 1)
  redis.call('HINCRBY', c.fp .. 'n', 't:' .. tenant, 1)
end

-- The tenant and priority a job's bookkeeping (RQ's `meta` field, JSON) records; ('', 'normal') without.
local function fair_route_of(job_key)
  local raw = redis.call('HGET', job_key, 'meta')
  local tenant, level = '', 'normal'
  if raw then
    local ok, meta = pcall(cjson.decode, raw)
    if ok and type(meta) == 'table' and type(meta.genqueue) == 'table' then
      local g = meta.genqueue
      if type(g.tenant) == 'string' then tenant = g.tenant end
      if g.priority == 'high' or g.priority == 'low' then level = g.priority end
    end
  end
  return tenant, level
end

local function fair_forget(c, level, tenant)
  redis.call('LPOP', c.fp .. 'ring:' .. level)
  redis.call('HDEL', c.fp .. 'used:' .. level, tenant)
end

-- Move one job from the lanes to the tail of RQ's queue list: the priority whose candidate (its ring's
-- current tenant's oldest job) has the earliest enqueue time plus offset; that tenant's turn ends after
-- `weight` jobs, or when its lane is empty. Returns the job id, or nil when every lane is empty.
local function fair_take(c)
  local best, best_eff, best_tenant
  for _, level in ipairs(FAIR_LEVELS) do
    local tenant = redis.call('LINDEX', c.fp .. 'ring:' .. level, 0)
    if tenant then
      local head = redis.call('LINDEX', c.fp .. 'lane:' .. level .. ':' .. tenant, 0)
      if head then
        local eff = tonumber(string.match(head, '^(%d+)|')) + c.offset[level]
        if best_eff == nil or eff < best_eff then best, best_eff, best_tenant = level, eff, tenant end
      else
        fair_forget(c, level, tenant)  -- its lane was deleted under it (a purge): heal the ring
      end
    end
  end
  if not best then return nil end
  local lane = c.fp .. 'lane:' .. best .. ':' .. best_tenant
  local head = redis.call('LPOP', lane)
  local id = string.sub(head, string.find(head, '|', 1, true) + 1)
  redis.call('HDEL', c.fp .. 'at', id)
  redis.call('RPUSH', c.queue, id)
  redis.call('HINCRBY', c.fp .. 'n', '*', -1)
  if redis.call('HINCRBY', c.fp .. 'n', 't:' .. best_tenant, -1) <= 0 then
    redis.call('HDEL', c.fp .. 'n', 't:' .. best_tenant)
  end
  if redis.call('LLEN', lane) == 0 then
    fair_forget(c, best, best_tenant)
  else
    local used = redis.call('HINCRBY', c.fp .. 'used:' .. best, best_tenant, 1)
    local weight = tonumber(redis.call('HGET', c.weights, best_tenant == '' and '*' or best_tenant)) or 1
    if used >= weight then
      local ring = c.fp .. 'ring:' .. best
      redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
      redis.call('HDEL', c.fp .. 'used:' .. best, best_tenant)
    end
  end
  return id
end

-- Top RQ's queue list up to `want` jobs (c.buffer unless given) from the lanes; returns how many moved.
local function fair_refill(c, want)
  if (tonumber(redis.call('HGET', c.fp .. 'n', '*')) or 0) <= 0 then return 0 end  -- the lanes are empty
  want = want or c.buffer
  local moved = 0
  while redis.call('LLEN', c.queue) < want do
    if not fair_take(c) then break end
    moved = moved + 1
  end
  return moved
end
