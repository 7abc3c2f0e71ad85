"""Find jobs abandoned by dead workers and retry them as CRASH (never charged to the retry budget).

A started-registry member `<job_id>:<execution_id>` is abandoned when
- its execution's worker is a genqueue worker (in `genqueue:workers`) whose alive key has expired, or
- its worker is not ours (a plain `rq worker` on the same queue) and RQ's own expiry score has passed, or
- its execution hash is gone and the expiry score has passed.
Each one is moved by the same guarded transaction as a normal failure, so a sweep racing the (not so
dead) worker, or another sweep, moves the job at most once.

Jobs stranded in RQ's intermediate list (popped by a worker that died before starting them) are pushed
back to the front of the queue once they have sat there longer than STRANDED_AFTER_S.
"""

from __future__ import annotations

import time

import structlog
from redis import Redis
from redis.exceptions import WatchError
from rq.executions import Execution
from rq.job import JobStatus
from rq.utils import now, parse_composite_key

from ..dlq.store import DLQStore
from ..queues import fetch_job, make_queue
from ..retry.kinds import ErrorKind
from ..retry.manager import Failure, RetryManager
from .liveness import WORKERS_KEY, alive_key
from .transition import record_failure

log = structlog.get_logger("genqueue.sweep")
STRANDED_AFTER_S = 15.0


def find_abandoned(connection: Redis, started_key: str, now_ts: float) -> list[tuple[str, str]]:
    members = connection.zrange(started_key, 0, -1, withscores=True)
    if not members:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for composite, _ in members:
            pipe.hget(b"rq:execution:" + composite, "worker_name")
        names = [n.decode() if n else None for n in pipe.execute()]
    distinct = sorted({n for n in names if n})
    with connection.pipeline(transaction=False) as pipe:
        for name in distinct:
            pipe.sismember(WORKERS_KEY, name)
            pipe.exists(alive_key(name))
        replies = pipe.execute()
    ours = {n: bool(replies[2 * i]) for i, n in enumerate(distinct)}
    alive = {n: bool(replies[2 * i + 1]) for i, n in enumerate(distinct)}
    abandoned = []
    for (composite, score), name in zip(members, names):
        expired = score < now_ts
        if (name and ours[name] and not alive[name]) or (name and not ours[name] and expired) or (not name and expired):
            abandoned.append((composite.decode(), name or ""))
    return abandoned


def sweep_queue(connection: Redis, queue_name: str, manager: RetryManager, store: DLQStore) -> int:
    """Retry every abandoned job of one queue as CRASH; returns how many this sweep moved."""
    queue = make_queue(connection, queue_name)
    moved = 0
    for composite, worker_name in find_abandoned(connection, queue.started_job_registry.key, time.time()):
        job_id, execution_id = parse_composite_key(composite)
        execution = Execution(execution_id, job_id, connection, worker_name=worker_name)
        job = fetch_job(connection, job_id)
        if job is None:  # nothing left to run; drop the dangling claim
            connection.zrem(queue.started_job_registry.key, composite)
            continue
        job.ended_at = now()
        who = f"worker {worker_name}" if worker_name else "an unknown worker"
        failure = Failure(kind=ErrorKind.CRASH, type="AbandonedJob",
                          message=f"{who} died while running the job (abandoned)")
        _, ok = record_failure(connection, job, queue, failure, manager, store, execution=execution,
                               worker_name=worker_name or "?")
        moved += ok
    moved += requeue_stranded(connection, queue)
    prune_dead_workers(connection)
    return moved


def requeue_stranded(connection: Redis, queue) -> int:
    """Jobs popped into RQ's intermediate list by a worker that died before starting them.

    Every job passes through that list for a moment on each dequeue, so a sighting means nothing by
    itself: first sightings live in one hash per queue and are forgotten as soon as the job is no longer
    in the list; only a job seen there continuously for STRANDED_AFTER_S (and still `queued`) is pushed
    back, in one transaction with its removal from the list.
    """
    key = queue.intermediate_queue.key
    seen_key = f"genqueue:stranded-seen:{{{queue.name}}}"
    present = {raw.decode() for raw in connection.lrange(key, 0, -1)}
    seen = {k.decode(): float(v) for k, v in connection.hgetall(seen_key).items()}
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
                pipe.watch(key, f"rq:job:{job_id}")
                status = pipe.hget(f"rq:job:{job_id}", "status")
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


def prune_dead_workers(connection: Redis) -> None:
    names = [n.decode() for n in connection.smembers(WORKERS_KEY)]
    if not names:
        return
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(alive_key(name))
        alive = pipe.execute()
    dead = [n for n, a in zip(names, alive) if not a]
    # A dead name stays one extra sweep, so its abandoned jobs are recognised as ours before it goes.
    stale = [n for n in dead if not connection.set(f"genqueue:dead-seen:{n}", 1, nx=True, ex=3600)]
    if stale:
        connection.srem(WORKERS_KEY, *stale)
