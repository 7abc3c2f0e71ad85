"""Apply a retry decision to Redis in one transaction: the job leaves the started registry and lands in
exactly one place — RQ's ScheduledJobRegistry (same job id, for the scheduler to bring back) or the DLQ.

The transaction WATCHes the job hash and first checks that this worker's execution is still in the
started registry. Whoever removes the execution from the started registry owns the job's next move; a
sweeper that found the job abandoned writes the job hash too, so a concurrent claim makes our EXEC fail
(WatchError), and on the re-check we see the execution gone and step aside. No double move, no loss.
"""

from __future__ import annotations

import math
import time
from typing import Any

import structlog
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.utils import now

from ..dlq.entry import build_entry, iso
from ..dlq.store import DLQStore
from ..jobmeta import gq
from ..retry.manager import Decision, Failure

log = structlog.get_logger("genqueue.worker")
MAX_TX_ATTEMPTS = 20


def _ts(dt) -> str | None:
    return None if dt is None else iso(dt.timestamp())


def dead_letter_entry(job: Job, queue_name: str, decision: Decision, failure: Failure, store: DLQStore) -> dict:
    meta = gq(job)
    failed_at = now().timestamp()
    return build_entry(
        job_id=job.id,
        queue=queue_name,
        func=job.func_name,
        args=list(job.args),
        kwargs=dict(job.kwargs),
        reason=str(decision.reason),
        error={
            "kind": str(failure.kind),
            "type": failure.type,
            "message": failure.message,
            "status_code": failure.status_code,
            "traceback": failure.traceback,
        },
        history=list(meta["history"]),
        retry_count=int(meta.get("retries") or 0),
        crash_count=int(meta.get("crashes") or 0),
        enqueued_at=_ts(job.enqueued_at),
        failed_at=failed_at,
        retention_s=store.retention_s,
        replays=int(meta.get("replays") or 0),
        replayed_from=meta.get("replayed_from"),
        provider_job_id=meta.get("provider_job_id"),
        options={"timeout": job.timeout, "max_retries": meta.get("max_retries")},
    )


def schedule_in(pipe, queue, job: Job, run_at: float) -> None:
    """Queue.schedule_job's effect, inside our MULTI.

    RQ 2.12's ScheduledJobRegistry.schedule ignores its `pipeline` argument and ZADDs on the connection at
    once, so calling it here would put the job in the scheduled registry before (or without) the EXEC that
    takes it out of the started registry. Its scores are also whole seconds, truncated: a retry could run
    up to 1 s early, so we round up, which keeps a provider's Retry-After honoured.
    """
    job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
    job.save(pipeline=pipe)
    pipe.sadd(queue.redis_queues_keys, queue.key)
    pipe.zadd(queue.scheduled_job_registry.key, {job.id: math.ceil(run_at)})


def move_failed_job(
    worker,
    job: Job,
    queue,
    decision: Decision,
    entry: dict[str, Any] | None,
    store: DLQStore,
    started_registry_key: str,
    execution_key: str | None,
) -> bool:
    """Run the move; False when another process had already claimed the job (we then change nothing)."""
    connection = worker.connection
    execution = worker.execution
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(job.key)
                if execution_key is not None and pipe.zscore(started_registry_key, execution_key) is None:
                    pipe.reset()
                    return False
                pipe.multi()
                if execution is not None:
                    execution.delete(job=job, pipeline=pipe)
                worker.set_current_job_id(None, pipeline=pipe)
                if decision.is_retry:
                    if decision.delay and decision.delay > 0:
                        schedule_in(pipe, queue, job, time.time() + decision.delay)
                    else:
                        queue.enqueue_job(job, pipeline=pipe)
                else:
                    assert entry is not None
                    store.add(entry, pipeline=pipe)
                    # The entry holds everything needed to re-create the job; the RQ hash would only be a
                    # second, drifting copy, so the DLQ is the job's one place from now on.
                    pipe.delete(job.key, job.dependents_key, job.dependencies_key)
                worker.increment_failed_job_count(pipeline=pipe)
                pipe.execute()
                worker.execution = None
                return True
            except WatchError:
                continue
    raise RuntimeError(f"job {job.id}: could not record the failure after {MAX_TX_ATTEMPTS} attempts")
