"""Put one new job in its queue (or the scheduled registry) and count it, in one Lua script.

Why not RQ's `Queue.enqueue_job(unique=True)`: its atomic "hash must not exist" check is a Lua script of its
own (rq/scripts.py), so the `enqueued` counter of /metrics could only be incremented beside it, in a second
command that a crash between the two would skip. This script does what RQ's two unique scripts do (EXISTS
check, HSET of `Job.to_dict()`, EXPIRE, RPUSH or ZADD, SADD of the queue to `rq:queues`) plus the HINCRBY,
in one round trip instead of RQ's two (it SADDs `rq:queues` in a pipeline first). The hash it writes is
the one RQ writes (`rq.scripts._build_hset_args`), so RQ's readers see the same job.
"""

from __future__ import annotations

from datetime import datetime

from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.scripts import _build_hset_args
from rq.utils import now

from ..backend import counters, durable, events, keys
from ..backend.scripts import registered
from ..tenants.fair import FAIR, context_args, now_ms
from ..tenants.fair import route as fair_route

SUBMIT = (
    FAIR
    + events.LUA_XADD
    + f"""
-- KEYS: job hash, queue list, scheduled registry, rq:queues, metrics hash, DLQ entry of the same id
-- ARGV: job id, unique (1/0), ttl (-1 = none), run_at ('' = now), queue key, the fair context (7), tenant,
-- priority, now ms, hset field/value pairs...  A job to run now goes to its lane (tenants/fair.py).
-- Returns 1 (created), 0 (a job hash has this id), -1 (a DLQ entry has this id).
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  if redis.call('EXISTS', KEYS[6]) == 1 then return -1 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 16))
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('SADD', KEYS[4], ARGV[5])
if ARGV[4] == '' then
  local c = fair_ctx(6)
  fair_push(c, ARGV[13], ARGV[14], ARGV[1], ARGV[15])
  fair_refill(c)
else
  redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[1])
end
redis.call('HINCRBY', KEYS[5], '{counters.ENQUEUED}', 1)
gq_event(ARGV[1], 'enqueued', ARGV[4] == '' and '{{}}' or ('{{"run_at":' .. ARGV[4] .. '}}'))
return 1
"""
)


class IdTaken(DuplicateJobError):
    """A unique submit found its id in use: by a job hash (`dead` False) or by a DLQ entry (`dead` True)."""

    def __init__(self, job_id: str, *, dead: bool) -> None:
        super().__init__(f"Job with ID '{job_id}' already exists" + (" in the DLQ" if dead else ""))
        self.dead = dead


def submit(queue, job: Job, when: datetime | None = None, *, unique: bool = False, pipeline=None) -> Job:
    """Enqueue `job` now, or schedule it for `when`. With `unique`, IdTaken when a job hash or a DLQ entry
    already has the id (checked in the same script that writes: an id belongs to whoever holds it).
    With `pipeline`, the script is only queued there: the caller executes it and reads the replies (and
    confirms durability itself)."""
    job.origin = queue.name
    job.enqueued_at = now() if when is None else None  # as RQ: a scheduled job is enqueued when it is due
    if job.timeout is None:
        job.timeout = queue._default_timeout
    job._status = JobStatus.QUEUED if when is None else JobStatus.SCHEDULED
    run_at = "" if when is None else int(when.timestamp())  # RQ's whole seconds; naive = local time
    script = registered(queue.connection, SUBMIT)
    script_keys = [
        job.key,
        queue.key,
        queue.scheduled_job_registry.key,
        queue.redis_queues_keys,
        keys.metrics(queue.name),
        keys.DLQKeys(queue.name).entry(job.id),
    ]
    args = [
        job.id,
        int(unique),
        job.ttl if job.ttl is not None else -1,
        run_at,
        queue.key,
        *context_args(queue.name),
        *fair_route(job.meta),
        now_ms(),
        *_build_hset_args(job),
    ]
    if pipeline is not None:
        script(client=pipeline, keys=script_keys, args=args)
        return job
    # With GENQUEUE_WAIT_REPLICAS, WAIT rides in the same round trip.
    ok = durable.run_script(queue.connection, script, script_keys, args, f"job {job.id}")
    if ok != 1:
        raise IdTaken(job.id, dead=ok == -1)
    return job
