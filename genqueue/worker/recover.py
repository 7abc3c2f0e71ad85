"""`dlq recover`: move jobs stranded outside genqueue's places into the DLQ, idempotently.

- RQ's FailedJobRegistry: jobs failed by plain RQ workers on the same queue, stopped jobs, or jobs RQ's
  own abandoned-job cleanup failed. Each becomes an entry with reason `recovered`.
- RQ's StartedJobRegistry: executions whose worker is dead (same rule as the sweep), dead-lettered as
  CRASH with reason `recovered` instead of being retried.
Every move is one WATCH/MULTI that re-checks the job is still where it was found.
"""

from __future__ import annotations

import time

from redis.exceptions import WatchError
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.utils import now, parse_composite_key

from ..backend.queues import SERIALIZER, make_queue
from ..dlq.entry import build_entry, iso
from ..dlq.store import DLQStore
from ..retry.kinds import ErrorKind, Reason
from ..retry.manager import RetryManager

REASON = Reason.RECOVERED


def _last_line(text: str) -> tuple[str, str]:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "unknown failure"
    name, sep, message = last.partition(": ")
    if sep and name.replace(".", "").replace("_", "").isalnum():
        return name.rsplit(".", 1)[-1], message
    return "Failure", last


def _entry_from_failed(job: Job, store: DLQStore, exc_text: str, manager: RetryManager) -> dict:
    error_type, message = _last_line(exc_text)
    meta = job.meta.get("genqueue", {}) if isinstance(job.meta, dict) else {}
    # Scored and kept from when it reaches the DLQ: scored by the job's old end time but given a fresh TTL,
    # an old job's entry was pruned from every index (counted `expired`) while its key lived on, unlisted.
    failed_at = time.time()
    return build_entry(
        job_id=job.id,
        queue=store.keys.queue,
        func=job.func_name or "<unreadable>",
        args=list(job.args),
        kwargs=dict(job.kwargs),
        reason=REASON,
        error={
            "kind": str(ErrorKind.UNKNOWN),
            "type": error_type,
            "message": message,
            "status_code": None,
            "traceback": exc_text[-8000:],
        },
        history=list(meta.get("history", [])),
        retry_count=int(meta.get("retries") or 0),
        crash_count=int(meta.get("crashes") or 0),
        enqueued_at=iso(job.enqueued_at.timestamp()) if job.enqueued_at else None,
        failed_at=failed_at,
        retention_s=store.retention_s,
        replays=int(meta.get("replays") or 0),
        replayed_from=meta.get("replayed_from"),
        options={"timeout": job.timeout, "max_retries": meta.get("max_retries"), "tenant": meta.get("tenant")},
    )


def recover_failed(store: DLQStore, manager: RetryManager) -> tuple[int, list[str]]:
    """Move FailedJobRegistry jobs into the DLQ; returns (moved, ids that could not be read as JSON)."""
    conn = store.connection
    registry = FailedJobRegistry(store.keys.queue, connection=conn, serializer=SERIALIZER)
    moved, unreadable = 0, []
    for job_id in registry.get_job_ids(cleanup=False):
        key = Job.key_for(job_id)
        with conn.pipeline() as pipe:
            try:
                pipe.watch(key, registry.key)
                if pipe.zscore(registry.key, job_id) is None:
                    continue
                if not pipe.exists(key):  # the job hash expired: only the registry member remains
                    pipe.multi()
                    pipe.zrem(registry.key, job_id)
                    pipe.execute()
                    continue
                try:
                    job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
                    result = job.latest_result()
                    entry = _entry_from_failed(job, store, (result.exc_string if result else "") or "", manager)
                except (DeserializationError, ValueError, TypeError):
                    unreadable.append(job_id)  # e.g. pickled by a non-genqueue producer: left where it is
                    continue
                pipe.multi()
                store.add(entry, pipeline=pipe)
                pipe.zrem(registry.key, job_id)
                pipe.delete(key)
                pipe.execute()
                moved += 1
            except WatchError:
                continue
    return moved, unreadable


def recover_orphans(store: DLQStore, manager: RetryManager) -> int:
    """Dead-letter started-registry executions whose worker is dead (as CRASH, reason recovered)."""
    from ..retry.manager import Decision, Failure, decision_record
    from ..retry.meta import gq, retry_state
    from .sweep import find_abandoned
    from .transition import dead_letter_entry, move_failed_job

    conn = store.connection
    queue = make_queue(conn, store.keys.queue)
    moved = 0
    for composite, worker_name in find_abandoned(conn, queue.started_job_registry.key, time.time()):
        job_id, execution_id = parse_composite_key(composite)
        try:
            job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
        except Exception:  # noqa: BLE001 - nothing left to recover
            conn.zrem(queue.started_job_registry.key, composite)
            continue
        failure = Failure(
            kind=ErrorKind.CRASH,
            type="AbandonedJob",
            message=f"worker {worker_name or '?'} died while running the job (recovered)",
        )
        decision = Decision("dead", ErrorKind.CRASH, attempt=retry_state(job).attempt, reason=REASON)
        job.ended_at = now()
        gq(job)["history"].append(
            decision_record(
                decision,
                failure,
                started_at=iso(job.started_at.timestamp()) if job.started_at else None,
                ended_at=iso(time.time()),
                worker=worker_name or "?",
            )
        )
        entry = dead_letter_entry(job, queue.name, decision, failure, store)
        execution = Execution(execution_id, job_id, conn, worker_name=worker_name)
        moved += move_failed_job(conn, job, queue, decision, entry, store, execution)
    return moved
