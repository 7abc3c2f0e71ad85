"""Find jobs abandoned by dead workers and retry them as CRASH (never charged to the retry budget).

A started-registry member `<job_id>:<execution_id>` is abandoned when
- its worker is a genqueue worker (in `genqueue:workers`) whose alive key has expired, or
- its expiry score has passed: a live genqueue worker keeps its current claim's score in the future
  (liveness.py), so a passed score means the worker stopped beating (or is a plain `rq worker`, whose
  expiry rule this is anyway), or
- its worker is alive but no longer lists it among its claims (`stale_claims`): after a failover the new
  primary may hold a claim the worker finished on the former one (the finish was lost with the rollback).
The worker is named by the execution hash, or — when that hash is gone (expired, or lost with a server
crash) — by the job hash's `worker_name`, so such a job is claimed in seconds, not left to RQ's expiry.
Each one is moved by the same guarded transaction as a normal failure, so a sweep racing the (not so
dead) worker, or another sweep, moves the job at most once.

Right after a server restart (or a blip this process saw) every worker's alive key may have lapsed
while the server was away; nobody is judged dead until the workers have had time to reconnect and beat
again (`restart_grace_s`), or a server outage would look like every worker dying at once.

Jobs that RQ's own started-registry cleanup moved to FailedJobRegistry as abandoned (any RQ reader runs
it: `rq info`, rq-dashboard) are taken back as CRASH retries too (`reclaim_failed`).

Jobs stranded in RQ's intermediate list (popped by a worker that died before starting them) are pushed
back to the front of the queue once they have sat there longer than STRANDED_AFTER_S.

Nothing one job holds stops the sweep: every step runs whatever another one did, and every item of a step
runs whatever another item did. A job the sweep cannot read (plain RQ's pickle, corrupt data) is skipped,
counted (`unreadable_count`) and logged once per process (`sweep.unreadable_skipped`); `genqueue dlq
recover` or an admin deals with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT
from rq.executions import Execution
from rq.job import JobStatus
from rq.utils import now, parse_composite_key

from ..backend import keys
from ..backend.outage import BACKOFF_CAP_S, CLOCK
from ..backend.queues import UNREADABLE_JOB_ERRORS, fetch_job, make_queue
from ..dlq.store import DLQStore
from ..retry.kinds import ErrorKind
from ..retry.manager import Failure, RetryManager
from ..support.logs import get_logger
from ..tasks.generate import JOB_FUNC
from .liveness import WORKERS_KEY, alive_key, dead_seen_key
from .transition import record_failure

log = get_logger("genqueue.sweep")
STRANDED_AFTER_S = 15.0
# A claim a live worker does not list is stale once the worker has beaten this many times without it, and
# this long: a claim the worker has just made shows up in its next beat.
UNCLAIMED_BEATS = 3
UNCLAIMED_AFTER_S = 2.0
# What RQ writes when it fails a job for infrastructure: its abandoned-job cleanup, and a plain RQ
# worker's killed work horse. Anything else in FailedJobRegistry is a real failure for `dlq recover`.
INFRASTRUCTURE_FAILURES = ("AbandonedJobError", "Work-horse terminated unexpectedly")
# A lost server is the outage handling's business (backend/outage.py), not one step's or one item's.
OUTAGE = (RedisConnectionError, RedisTimeoutError)
MAX_REMEMBERED = 10_000  # skipped items remembered per process, so each is logged once

_unreadable: dict[str, set[str]] = {}  # queue -> ids of jobs this process's sweeps could not read
_failing: dict[str, set[str]] = {}  # queue -> ids of jobs whose move raised something else (logged once)


def unreadable_count(queue_name: str) -> int:
    """How many distinct jobs of the queue this process's sweeps skipped because they could not be read."""
    return len(_unreadable.get(queue_name, ()))


def skip(queue_name: str, job_id: str, exc: BaseException, step: str) -> None:
    """Remember a job a step could not handle, and log it the first time. An unreadable job is skipped by
    later sweeps too (its data does not change); any other failure is tried again at the next sweep."""
    unreadable = isinstance(exc, UNREADABLE_JOB_ERRORS)
    seen = (_unreadable if unreadable else _failing).setdefault(queue_name, set())
    if job_id in seen or len(seen) >= MAX_REMEMBERED:
        return
    seen.add(job_id)
    log.warning(
        "sweep.unreadable_skipped" if unreadable else "sweep.item_failed",
        job_id=job_id,
        queue=queue_name,
        step=step,
        error=f"{type(exc).__name__}: {str(exc)[:200]}",
        skipped=len(seen),
    )


def _pruned(connection: Redis, min_dead_s: float) -> int:
    prune_dead_workers(connection, min_dead_s=min_dead_s)
    return 0  # moves no job


def run_step(queue_name: str, step: str, fn: Callable[[], int]) -> int:
    """One step of the sweep; what escapes it is logged, and the next step runs all the same."""
    try:
        return fn()
    except OUTAGE:
        raise
    except Exception as exc:  # noqa: BLE001 - one step's failure never stops the others
        log.error("sweep.step_failed", queue=queue_name, step=step, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return 0


def restart_grace_s(settings) -> float:
    """Long enough for every live worker to reconnect and beat again: its client may be asleep in the
    outage backoff (up to BACKOFF_CAP_S, twice: command and heartbeat) when the server comes back, and the
    server's uptime also counts the seconds it spent loading the append-only file."""
    return 2 * settings.liveness_ttl_s + settings.sweep_interval_s + 2 * BACKOFF_CAP_S


def in_restart_grace(connection: Redis, grace_s: float) -> bool:
    """True while liveness cannot be trusted: the server (re)started, or this process lost it, < grace_s ago."""
    if CLOCK.recently_back(grace_s):
        return True
    return float(connection.info("server").get("uptime_in_seconds", grace_s)) < grace_s


def find_abandoned(
    connection: Redis, started_key: str, now_ts: float, *, grace_s: float = 0.0
) -> list[tuple[str, str]]:
    members = cast("list[tuple[bytes, float]]", connection.zrange(started_key, 0, -1, withscores=True))
    if not members:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for composite, _ in members:
            pipe.hget(keys.RQ_EXECUTION_PREFIX.encode() + composite, "worker_name")
            pipe.hget(keys.RQ_JOB_PREFIX.encode() + composite.partition(b":")[0], "worker_name")
        replies = pipe.execute()
    names: list[str | None] = [
        (by_exec or by_job or b"").decode() or None
        for by_exec, by_job in zip(replies[::2], replies[1::2], strict=False)
    ]
    distinct = sorted({n for n in names if n})
    with connection.pipeline(transaction=False) as pipe:
        for name in distinct:
            pipe.sismember(WORKERS_KEY, name)
            pipe.exists(alive_key(name))
        replies = pipe.execute()
    ours = {n: bool(replies[2 * i]) for i, n in enumerate(distinct)}
    alive = {n: bool(replies[2 * i + 1]) for i, n in enumerate(distinct)}
    held = {
        composite: name
        for (composite, score), name in zip(members, names, strict=False)
        if score >= now_ts and name and ours[name] and alive[name]
    }
    stale = stale_claims(connection, started_key, held, now_ts)
    candidates = [
        (composite.decode(), name or "")
        for (composite, score), name in zip(members, names, strict=False)
        if score < now_ts or (name and ours[name] and not alive[name]) or composite in stale
    ]
    if candidates and grace_s > 0 and in_restart_grace(connection, grace_s):
        return []
    return candidates


def stale_claims(connection: Redis, started_key: str, held: dict[bytes, str], now_ts: float) -> set[bytes]:
    """Members held by live workers that their workers' last UNCLAIMED_BEATS beats (and UNCLAIMED_AFTER_S) did
    not list. A worker that publishes no claims (an older genqueue) is never judged here."""
    seen_key = keys.unclaimed_seen(started_key)
    workers = sorted(set(held.values()))
    with connection.pipeline(transaction=False) as pipe:
        for name in workers:
            pipe.hgetall(keys.claims(name))
        pipe.hgetall(seen_key)
        *listed, seen = pipe.execute()
    claims = dict(zip(workers, listed, strict=True))
    unlisted: dict[bytes, int] = {}
    for member, name in held.items():
        beat = claims[name].get(keys.CLAIMS_BEAT.encode())
        if beat is not None and member not in claims[name]:
            unlisted[member] = int(beat)
    stale: set[bytes] = set()
    first_sightings: dict[FieldT, EncodableT] = {}
    for member, beat in unlisted.items():
        first_beat, _, first_ts = (seen.get(member) or b"").decode().partition(":")
        if not first_ts or beat < int(first_beat):  # first sighting, or the worker restarted under its name
            first_sightings[member] = f"{beat}:{now_ts!r}"
        elif beat - int(first_beat) >= UNCLAIMED_BEATS and now_ts - float(first_ts) >= UNCLAIMED_AFTER_S:
            stale.add(member)
    forgotten = [member for member in seen if member not in unlisted]
    if first_sightings or forgotten:
        with connection.pipeline(transaction=False) as pipe:
            if forgotten:
                pipe.hdel(seen_key, *forgotten)
            if first_sightings:
                pipe.hset(seen_key, mapping=first_sightings)
                pipe.expire(seen_key, 3600)
            pipe.execute()
    for member in stale:
        log.warning("sweep.stale_claim", member=member.decode(), worker=held[member])
    return stale


def sweep_queue(
    connection: Redis, queue_name: str, manager: RetryManager, store: DLQStore, *, grace_s: float = 0.0
) -> int:
    """Retry every abandoned job of one queue as CRASH; returns how many this sweep moved. Each step runs
    whatever the one before it did (run_step)."""
    queue = make_queue(connection, queue_name)
    moved = run_step(queue_name, "abandoned", lambda: retry_abandoned(connection, queue, manager, store, grace_s))
    moved += run_step(queue_name, "reclaim_failed", lambda: reclaim_failed(connection, queue, manager, store))
    moved += run_step(queue_name, "stranded", lambda: requeue_stranded(connection, queue))
    run_step(
        queue_name,
        "prune_workers",
        lambda: _pruned(connection, grace_s + 2 * STRANDED_AFTER_S),
    )
    return moved


def retry_abandoned(connection: Redis, queue, manager: RetryManager, store: DLQStore, grace_s: float) -> int:
    moved = 0
    for composite, worker_name in find_abandoned(
        connection, queue.started_job_registry.key, time.time(), grace_s=grace_s
    ):
        job_id, execution_id = parse_composite_key(composite)
        try:
            moved += _retry_abandoned_one(connection, queue, manager, store, job_id, execution_id, worker_name)
        except OUTAGE:
            raise
        except Exception as exc:  # noqa: BLE001 - one job never stops the sweep of the others
            skip(queue.name, job_id, exc, "abandoned")
    return moved


def _retry_abandoned_one(connection: Redis, queue, manager, store, job_id: str, execution_id: str, worker_name: str):
    execution = Execution(execution_id, job_id, connection, worker_name=worker_name)
    job = fetch_job(connection, job_id)
    if job is None:  # nothing left to run; drop the dangling claim
        connection.zrem(queue.started_job_registry.key, f"{job_id}:{execution_id}")
        return 0
    job.ended_at = now()
    who = f"worker {worker_name}" if worker_name else "an unknown worker"
    failure = Failure(
        kind=ErrorKind.CRASH, type="AbandonedJob", message=f"{who} died while running the job (abandoned)"
    )
    _, ok = record_failure(
        connection, job, queue, failure, manager, store, execution=execution, worker_name=worker_name or "?"
    )
    return int(ok)


def reclaim_failed(connection: Redis, queue, manager: RetryManager, store: DLQStore) -> int:
    """Take genqueue jobs that RQ failed for infrastructure back from FailedJobRegistry, as CRASH retries.

    genqueue itself never puts a job there; RQ does when its started-registry cleanup finds an expired
    score (`AbandonedJobError`) or a plain RQ worker's horse dies. Neither is the job's fault, so the job
    gets the same uncharged CRASH retry the sweep gives an abandoned job, claimed by its registry member.
    """
    registry = queue.failed_job_registry
    ids = [raw.decode() for raw in cast("list[bytes]", connection.zrange(registry.key, 0, -1))]
    moved = 0
    for job_id in ids:
        if job_id in _unreadable.get(queue.name, ()):
            continue  # could not be read before; its data does not change while it sits there
        try:
            moved += _reclaim_one(connection, queue, manager, store, job_id)
        except OUTAGE:
            raise
        except Exception as exc:  # noqa: BLE001 - a pickled job (plain RQ) never stops the sweep of the others
            skip(queue.name, job_id, exc, "reclaim_failed")
    return moved


def _reclaim_one(connection: Redis, queue, manager: RetryManager, store: DLQStore, job_id: str) -> int:
    registry = queue.failed_job_registry
    job = fetch_job(connection, job_id)
    if job is None or job.func_name != JOB_FUNC:
        return 0  # an expired hash, or not a generation job: `dlq recover` deals with those
    result = job.latest_result()
    reason = (result.exc_string if result is not None else "") or ""
    if not any(marker in reason for marker in INFRASTRUCTURE_FAILURES):
        return 0
    job.ended_at = now()
    failure = Failure(
        kind=ErrorKind.CRASH,
        type="AbandonedJob",
        message="RQ's cleanup failed the job as abandoned (FailedJobRegistry); taken back",
    )
    _, ok = record_failure(
        connection,
        job,
        queue,
        failure,
        manager,
        store,
        execution=None,
        worker_name=job.worker_name or "?",
        registry_claim=(registry.key, job_id),
    )
    if ok:
        log.warning("sweep.reclaimed_from_failed", job_id=job_id, queue=queue.name)
    return int(ok)


def requeue_stranded(connection: Redis, queue) -> int:
    """Jobs popped into RQ's intermediate list by a worker that died before starting them.

    Every job passes through that list for a moment on each dequeue, so a sighting means nothing by
    itself: first sightings live in one hash per queue and are forgotten as soon as the job is no longer
    in the list; only a job seen there continuously for STRANDED_AFTER_S (and still `queued`) is pushed
    back, in one transaction with its removal from the list.
    """
    key = queue.intermediate_queue.key
    seen_key = keys.stranded_seen(queue.name)
    present = {raw.decode() for raw in cast("list[bytes]", connection.lrange(key, 0, -1))}
    seen = {k.decode(): float(v) for k, v in cast("dict[bytes, bytes]", connection.hgetall(seen_key)).items()}
    gone = [job_id for job_id in seen if job_id not in present]
    if gone:
        connection.hdel(seen_key, *gone)
    moved = 0
    now_ts = time.time()
    for job_id in present:
        if job_id not in seen:
            connection.hsetnx(seen_key, job_id, repr(now_ts))
            continue
        if now_ts - seen[job_id] < STRANDED_AFTER_S:
            continue
        with connection.pipeline() as pipe:
            try:
                pipe.watch(key, keys.rq_job(job_id))
                status = cast("bytes | None", pipe.hget(keys.rq_job(job_id), "status"))
                pipe.multi()
                pipe.lrem(key, 0, job_id)
                pipe.hdel(seen_key, job_id)
                requeue = status is not None and status.decode() == JobStatus.QUEUED.value
                if requeue:
                    pipe.lpush(queue.key, job_id)  # never started: back to the front, nothing charged
                pipe.execute()
            except WatchError:
                continue
        moved += requeue
        log.warning("sweep.stranded", job_id=job_id, queue=queue.name, requeued=requeue)
    return moved


def prune_dead_workers(connection: Redis, min_dead_s: float) -> None:
    """Forget genqueue workers whose alive key has been gone for min_dead_s: long enough for the sweep
    (held back by the restart grace) to have recognised their abandoned jobs as ours first."""
    names = [n.decode() for n in cast("set[bytes]", connection.smembers(WORKERS_KEY))]
    if not names:
        return
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(alive_key(name))
        alive = pipe.execute()
    dead = [n for n, a in zip(names, alive, strict=False) if not a]
    if not dead:
        return
    now_ts = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in dead:
            pipe.set(dead_seen_key(name), repr(now_ts), nx=True, ex=3600)
            pipe.get(dead_seen_key(name))
        replies = pipe.execute()
    stale = [n for n, first in zip(dead, replies[1::2], strict=False) if first and now_ts - float(first) >= min_dead_s]
    if stale:
        connection.srem(WORKERS_KEY, *stale)
        connection.delete(*(keys.worker_tasks(n) for n in stale))  # its published tasks (tasks/catalogue.py)
