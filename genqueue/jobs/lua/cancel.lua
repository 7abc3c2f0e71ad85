-- Cancel one job, decided by where it is, in one atomic step (jobs/cancel.py). gq_event: backend/events.py.
-- ARGV: 1 job key, 2 job id, 3 cancel-request key, 4 the record (JSON: by, at, reason), 5 record TTL (s),
--       6 now (Unix s), 7 ended_at (RQ's time format), 8 queue prefix, 9 scheduled prefix, 10 canceled prefix,
--       11 intermediate-list key, 12 the queue's fair prefix (tenants/lua/fair.lua), 13 parked counter hash,
--       14 metrics prefix ('genqueue:metrics:{'), 15 metrics field, 16 credits prefix ('genqueue:credits:'),
--       17 the job hash field marking a credit given back (tenants/credits.GIVEN_BACK_FIELD)
-- Returns {outcome, status}: 'canceled' (it was queued, scheduled or deferred: it is out of every list and
-- registry now, in RQ's CanceledJobRegistry), 'requested' (it is started: the request key is set, the move that
-- ends its attempt lands it in `canceled`), 'already' (canceled before), 'finished' (too late), 'missing'.
local job_key, id = ARGV[1], ARGV[2]
local status = redis.call('HGET', job_key, 'status')
if not status then return {'missing', ''} end
if status == 'canceled' then return {'already', status} end
if status == 'started' then
  redis.call('SET', ARGV[3], ARGV[4], 'NX', 'EX', tonumber(ARGV[5]))  -- the first request's record wins
  return {'requested', status}
end
if status ~= 'queued' and status ~= 'scheduled' and status ~= 'deferred' then return {'finished', status} end
local origin = redis.call('HGET', job_key, 'origin') or ''
redis.call('LREM', ARGV[8] .. origin, 0, id)
local lane_ms = redis.call('HGET', ARGV[12] .. 'at', id)  -- waiting in its fair lane (fair.lua's fair_push)
if lane_ms then
  redis.call('HDEL', ARGV[12] .. 'at', id)
  local tenant, level = fair_route_of(job_key)
  if redis.call('LREM', ARGV[12] .. 'lane:' .. level .. ':' .. tenant, 1, lane_ms .. '|' .. id) > 0 then
    redis.call('HINCRBY', ARGV[12] .. 'n', '*', -1)  -- an emptied lane's ring entry heals at the next take
    redis.call('HINCRBY', ARGV[12] .. 'n', 't:' .. tenant, -1)
  end
end
redis.call('LREM', ARGV[11], 0, id)  -- popped and not yet claimed: the claim will find it canceled anyway
redis.call('ZREM', ARGV[9] .. origin, id)
local parked = redis.call('HGET', job_key, 'genqueue_parked')  -- the list its park put it in (limits.lua)
if status == 'deferred' and parked and redis.call('LREM', parked, 0, id) > 0 then
  redis.call('HINCRBY', ARGV[13], origin, -1)  -- else the waker pops the id, counts it and skips it
end
-- A credit that bought this job's current budget (its last manual retry, `runs retry-failed`) is given back,
-- once (tenants/credits.credit_to_give_back is the same rule for a running job's move, worker/cancel.py).
local meta_ok, meta = pcall(cjson.decode, redis.call('HGET', job_key, 'meta') or '')
if meta_ok and type(meta) == 'table' and type(meta.genqueue) == 'table' and type(meta.genqueue.history) == 'table' then
  local h = meta.genqueue.history
  for i = #h, 1, -1 do
    local r = h[i]
    if type(r) == 'table' and r.action == 'manual_retry' then
      if type(r.credit) == 'string' and r.credit ~= '' and redis.call('HGET', job_key, ARGV[17]) ~= tostring(i) then
        local credits = ARGV[16] .. r.credit
        if redis.call('EXISTS', credits) == 1 then redis.call('INCRBY', credits, 1) end  -- absent: unlimited
        redis.call('HSET', job_key, ARGV[17], tostring(i))
      end
      break
    end
  end
end
redis.call('HSET', job_key, 'status', 'canceled', 'ended_at', ARGV[7], 'genqueue_cancel', ARGV[4])
redis.call('EXPIRE', job_key, tonumber(ARGV[5]))
redis.call('ZADD', ARGV[10] .. origin, tonumber(ARGV[6]), id)
redis.call('HINCRBY', ARGV[14] .. origin .. '}', ARGV[15], 1)
local rec = cjson.decode(ARGV[4])
local was = status
if status == 'deferred' then was = 'parked' end
gq_event(id, 'canceled', cjson.encode({by = rec['by'], reason = rec['reason'], was = was}))
return {'canceled', status}
