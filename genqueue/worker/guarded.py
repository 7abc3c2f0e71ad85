"""A worker transition as one round trip: a claim check and the writes it guards, in one Lua script.

RQ builds each transition's writes by calling its own methods with a pipeline (`job.save(pipeline=...)`,
`Execution.create(...)`, `Result.create(...)`, the registries' `add`/`remove`). genqueue keeps those calls —
so the keys and fields are exactly RQ's and `rq info`, rq-dashboard, `Job.fetch` and Results read the same
state — but sends the recorded commands to GUARD instead of wrapping them in WATCH + a read + MULTI/EXEC
(three round trips, two of them re-sent after every WatchError). The script checks the claim and runs the
commands only if it holds; a script runs atomically, so no other client can change the claim in between.

Claims: ("member", sorted-set key, member) — our execution (or registry entry) is still there, i.e. nobody
has taken the job from us; ("field", hash key, field, value) — e.g. the job is still `queued`.

Limits, on purpose: the guarded commands must be writes whose replies the caller does not need (pipelines
queue reads too, but a read inside would be answered only inside the script), and not scripts themselves
(EVALSHA cannot run inside a script): the dead-letter move, whose DLQ add is a Lua script, keeps its
WATCH/MULTI transaction (transition.py). Keys are passed as ARGV, which standalone Redis and Valkey allow;
a Redis Cluster would need them declared (genqueue targets one server, see docs/how-to/managed-redis.md).
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from redis import Redis

from ..backend import events, keys
from ..backend.scripts import compose, registered
from ..tenants.fair import FAIR, context_args
from ..usage.record import RECORD

RUN_RECORDED = """
local function run_recorded(from)  -- ARGV[from..]: for each command, its word count, then its words
  local i = from
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
"""

LIMITS = resources.files("genqueue.limits").joinpath("lua", "limits.lua").read_text()

# ARGV: claim kind, a, b, c; the veto key ('' for none: a cancel request, jobs/cancel.py); L, then L limit
# arguments (a release: prefix, wake, key, job id, now ms, pause ms, job prefix, queue prefix, outcome, breaker
# min calls, default cooldown ms, tenant, settle JSON; L = 0 for a job without a limit key); U, then U usage
# arguments (usage/record.py's record_args; U = 0: nothing to record); then the recorded commands. Returns
# {1, the breaker's event or ''}, {0, found}, or {0, VETOED} when the veto key exists (nothing written).
GUARD = compose(
    RUN_RECORDED,
    LIMITS,
    RECORD,
    """
local kind, a, b, c = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if kind == 'member' then
  if not redis.call('ZSCORE', a, b) then return {0, ''} end
elseif kind == 'field' then
  local v = redis.call('HGET', a, b)
  if v ~= c then return {0, v or ''} end
end
if ARGV[5] ~= '' and redis.call('EXISTS', ARGV[5]) == 1 then return {0, '(vetoed)'} end
local l = tonumber(ARGV[6])
local u = tonumber(ARGV[7 + l])
run_recorded(8 + l + u)
if u > 0 then usage_record(8 + l, 7 + l + u) end
if l > 0 then
  return {1, lim_release(ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13],
                         ARGV[14], ARGV[15], tonumber(ARGV[16]), tonumber(ARGV[17]), ARGV[18], ARGV[19])}
end
return {1, ''}
""",
)
VETOED = "(vetoed)"  # run_guarded's `found` when the veto key (a cancel request) stopped the move

# The start claim with a limit: the job must still be queued, and must get its slot and rate token, in the
# same script that starts it; refused, it is parked (leaves the intermediate list, status deferred) and
# none of the start's writes happen. ARGV: 'field', job key, 'status', 'queued', the claim's execution key;
# L, then prefix, wake, known, key, job id, job key, tenant, now ms, cap, rate n, period ms, lease ms,
# cooldown ms, intermediate list, max_wait ms (a parked job's deadline: worker/parked.py), the estimate JSON
# ('' none), then per unit (tokens, images, usd) its declared amount and window ms (0 0: none). A job no longer
# queued whose execution hash is this claim's own was started by this very claim: the server died after
# running it and before answering, and PatientRetry sent it again (the execution id is new for every claim,
# so nobody else's start matches) — that is a success, not a duplicate dispatch, or the job would sit in the
# started registry, holding its slot, until the sweep.
CLAIM = compose(
    RUN_RECORDED,
    events.LUA_XADD,
    LIMITS,
    """
local v = redis.call('HGET', ARGV[2], ARGV[3])
-- Only a status that says the job is elsewhere makes this pop a duplicate; one nobody wrote (a hand edit, a
-- foreign producer) is claimed like `queued`, so the job fails as unreadable instead of vanishing.
local elsewhere = {started = 1, finished = 1, failed = 1, deferred = 1, scheduled = 1, stopped = 1, canceled = 1}
if v ~= ARGV[4] and (not v or elsewhere[v]) then
  if ARGV[5] ~= '' and redis.call('EXISTS', ARGV[5]) == 1 then return {1, 'replayed'} end
  return {0, v or ''}
end
local l = tonumber(ARGV[6])
if l > 0 then
  local parked = lim_acquire(ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13],
                             tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17]),
                             tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[21]), ARGV[22],
                             {unpack(ARGV, 23, 28)})
  if parked then
    redis.call('LREM', ARGV[20], 1, ARGV[11])
    gq_event(ARGV[11], 'parked', cjson.encode({key = ARGV[10], why = parked[1]}))
    return {2, parked[1], tostring(parked[2])}
  end
end
run_recorded(7 + l)
return {1, ''}
""",
)

# The dead-letter MULTI's part (transition.py): ARGV: L, the L release arguments (as GUARD's), U, the U usage
# arguments. Returns the breaker's event ('' if none).
RELEASE = (
    LIMITS
    + RECORD
    + """
local l = tonumber(ARGV[1])
local u = tonumber(ARGV[2 + l])
if u > 0 then usage_record(3 + l, 2 + l + u) end
if l == 0 then return '' end
return lim_release(ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9],
                   ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13], ARGV[14])
"""
)

WAKE = (
    LIMITS
    + """
-- ARGV: wake key, now ms, per-key batch, job prefix, queue prefix, limit-key prefix template head, tail
local due = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', ARGV[2], 'LIMIT', 0, 50)
local woken = 0
for _, key in ipairs(due) do
  woken = woken + lim_wake(ARGV[6] .. key .. ARGV[7], ARGV[1], key, tonumber(ARGV[2]), tonumber(ARGV[3]),
                           ARGV[4], ARGV[5])
end
return woken
"""
)

# The list is topped up from the lanes to one more than the buffer before the move and so left at the buffer
# after it: a job pushed to a lane by RQ-free means, or left there by a worker killed between RQ's pop and
# its refill, is found by the next pop.
# Every pop first wakes the parked jobs whose limit key is due (limits/), a few keys at a time: a busy
# worker brings them back at no extra round trip (an idle one, blocked in RQ's BLMOVE, leaves it to the
# scheduler tick), and a woken job at its queue's head may be the one this very pop takes.
# KEYS: queue list, its intermediate list.  ARGV[1]: job key prefix; ARGV[2..6]: wake key, now ms, queue
# prefix, limit-key prefix head and tail; ARGV[7..13]: the queue's fair context (tenants/fair.py); then the
# recorded commands (run first: the worker's pending bookkeeping).
POP = compose(
    RUN_RECORDED,
    LIMITS,
    FAIR,
    """
run_recorded(14)
for _, key in ipairs(redis.call('ZRANGEBYSCORE', ARGV[2], '-inf', ARGV[3], 'LIMIT', 0, 5)) do
  lim_wake(ARGV[5] .. key .. ARGV[6], ARGV[2], key, tonumber(ARGV[3]), 100, ARGV[1], ARGV[4])
end
local fair = fair_ctx(7)
fair_refill(fair, fair.buffer + 1)
local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not id then return false end
return {id, redis.call('HGETALL', ARGV[1] .. id)}
""",
)


def recorder(connection: Redis):
    """A pipeline that only records: fill it through RQ's `pipeline=` parameters, then `run_guarded`.
    In MULTI mode from the start (nothing is sent until execute, which is never called), because RQ calls
    `multi()` on a caller's pipeline that is not (Queue.setup_dependencies), which an empty
    non-transactional pipeline refuses."""
    pipe = connection.pipeline(transaction=True)
    pipe.multi()
    return pipe


def flatten(pipe) -> list[Any]:
    """The recorded commands as ARGV: for each, its word count then its words. The words stay as recorded: the
    script call encodes every argument as redis-py encodes a command's (encoding here too cost a second pass)."""
    out: list[Any] = []
    for args, _options in pipe.command_stack:
        if isinstance(args[0], str) and " " in args[0]:  # a command name can be two words ("CLIENT SETNAME")
            args = (*args[0].split(), *args[1:])
        out.append(len(args))
        out.extend(args)
    return out


def run_guarded(
    connection: Redis,
    pipe,
    claim: tuple[str, ...],
    release: list[Any] | None = None,
    veto: str = "",
    usage: list[Any] | None = None,
) -> tuple[bool, str]:
    """Run `pipe`'s recorded commands if `claim` holds: (True, the breaker's event or "") or (False, what was
    found instead). `release` (limiting.release_args): give the job's limit slot back (and settle its unit
    reservation) in the same script; `usage` (usage.record.record_args): count what the attempt spent.
    `veto`: a key whose existence stops the move (False, VETOED) — a cancel request for the job."""
    kind, *rest = claim
    rest = (list(rest) + ["", "", ""])[:3]
    release, usage = release or [], usage or []
    try:
        ok, found = registered(connection, GUARD)(
            args=[kind, *rest, veto, len(release), *release, len(usage), *usage, *flatten(pipe)]
        )
    finally:
        pipe.reset()
    return bool(ok), found.decode() if isinstance(found, bytes) else str(found or "")


def run_claim(
    connection: Redis, pipe, job_key: str, acquire: list[Any] | None, execution_key: str = ""
) -> tuple[int, str, str]:
    """The start claim: (1, "", "") started (or (1, "replayed", "") — this same claim had already run);
    (0, status, "") not queued any more; (2, why, wake_at ms) parked."""
    acquire = acquire or []
    try:
        reply = registered(connection, CLAIM)(
            args=["field", job_key, "status", "queued", execution_key, len(acquire), *acquire, *flatten(pipe)]
        )
    finally:
        pipe.reset()
    decoded = [x.decode() if isinstance(x, bytes) else x for x in reply]
    return int(decoded[0]), str(decoded[1] or ""), str(decoded[2] if len(decoded) > 2 else "")


def pop(connection: Redis, pipe, queue_name: str, intermediate_key: str, job_prefix: str):
    """The recorded commands (a worker's pending bookkeeping), the lanes' refill (tenants/fair.py), then RQ's
    non-blocking LMOVE of the next id into the intermediate list and the job hash, in one round trip:
    (job_id, flat hash fields) or None when the queue is empty."""
    try:
        reply = registered(connection, POP)(
            keys=[keys.rq_queue(queue_name), intermediate_key],
            args=[
                job_prefix,
                keys.LIMITS_WAKE,
                int(time.time() * 1000),
                keys.RQ_QUEUE_PREFIX,
                keys.LIMIT_PREFIX_HEAD,
                keys.LIMIT_PREFIX_TAIL,
                *context_args(queue_name),
                *flatten(pipe),
            ],
        )
    finally:
        pipe.reset()
    if not reply:
        return None
    job_id, flat = reply
    return job_id.decode(), dict(zip(flat[::2], flat[1::2], strict=False))
