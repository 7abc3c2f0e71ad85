"""Manual retry of one job (`genqueue jobs retry ID`), and the requeue steps `runs retry-failed` shares.

A manual retry puts the same job id back on its queue with a fresh retry budget and appends a
`manual_retry` record to the job's history (with `charged`: does this retry count against the user?).
The job is read and re-enqueued in one WATCH/MULTI over its RQ hash and its DLQ entry, so two admins
retrying one job enqueue it once, and a dead job's DLQ entry leaves in the same EXEC that enqueues it
(the same exactly-once rule as `dlq retry`).

`dlq.replay.replay` is not reused as is: it has no way to add the history record, and its replay cap is
the DLQ's rule, while a manual job retry is refused by attempts (attempts ≥ max_attempts) instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from ..backend import durable, events
from ..backend.queues import SERIALIZER, UNREADABLE_JOB_ERRORS, fetch_job, make_queue
from ..backend.replies import text
from ..dlq.entry import decode, iso
from ..dlq.replay import LIVE as LIVE_RQ_STATUSES
from ..dlq.replay import job_from_entry
from ..dlq.store import DLQStore
from ..errors import Conflict, CorruptEntry, GenqueueError, NotFound, UnreadableJob
from ..retry.kinds import ErrorKind, Reason
from ..retry.meta import MANUAL_RETRY, failures, gq
from ..tenants.fair import adopt
from .enqueue import check_job_id
from .status import max_attempts as _max_attempts  # the rule `jobs show` reports by, so both agree

RETRYABLE_RQ_STATUSES = {JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value}
MAX_TX_ATTEMPTS = 10


class MaxAttemptsReached(Conflict):
    code = "MAX_ATTEMPTS_REACHED"


checked_job_id = check_job_id  # RQ's id rule and our length cap, raising InvalidId (INVALID_ID)


# -- pure helpers over a job's history -----------------------------------------------------------------------
failure_records = failures  # the records of real attempts (manual retry records are boundaries)


def attempts_made(history: list[dict[str, Any]]) -> int:
    return len(failure_records(history))


def last_failure(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    failures = failure_records(history)
    return failures[-1] if failures else None


def charged_retries(history: list[dict[str, Any]]) -> int:
    """Manual retries that counted against the user (the per-item limit of `runs retry-failed`)."""
    return sum(1 for h in history if h.get("action") == MANUAL_RETRY and h.get("charged"))


def is_free(kind: str | None, reason: str | None) -> bool:
    """A crash (the worker died, or the job kept killing workers) is our fault, not the user's."""
    return kind == ErrorKind.CRASH.value or reason == Reason.CRASH_LOOP.value


def manual_retry_record(
    *,
    charged: bool,
    via: str,
    previous_status: str,
    kind: str | None,
    reason: str | None,
    forced: bool = False,
    run_retry: int | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """The history record of one manual retry. `error` is present and empty so readers that take the last
    record's error message (`jobs show` last_error) see the error cleared. `by`: who asked (over HTTP the
    token's principal); this process's user@host when not given (the CLI)."""
    from ..backend.audit import who

    record: dict[str, Any] = {
        "n": None,
        "kind": None,
        "action": MANUAL_RETRY,
        "error": {"type": None, "message": None, "status_code": None},
        "charged": charged,
        "forced": forced,
        "via": via,
        "at": iso(time.time()),
        "by": by or who(),
        "previous": {"status": previous_status, "kind": kind, "reason": reason},
    }
    if run_retry is not None:
        record["run_retry"] = run_retry
    return record


def with_fresh_budget(meta: dict[str, Any], record: dict[str, Any]) -> None:
    """Append the record and restart the budget after it (the backoff exponents restart too)."""
    meta.setdefault("history", []).append(record)
    meta["retries"] = 0
    meta["crashes"] = 0
    meta["budget_from"] = len(meta["history"])


# -- the transaction helpers ------------------------------------------------------------------------------------
def confirm_refusal(pipe) -> None:
    """Call before refusing on what was read after WATCH: an empty MULTI/EXEC, which raises WatchError when a
    watched key changed meanwhile. Reads that straddle another client's EXEC can describe a state that never
    existed (a job in neither place, an entry listed but gone); this makes every refusal rest on one
    consistent state, and the caller's loop reads again otherwise."""
    if pipe.explicit_transaction:
        return  # commands are already queued: never EXEC half a decision
    pipe.multi()
    pipe.execute()


# -- the requeue steps, queued into a caller's MULTI ----------------------------------------------------------
def requeue_dead_in(
    pipe, queue, store: DLQStore, entry: dict[str, Any], record: dict[str, Any], *, result_ttl: int | None = None
) -> Job:
    """Delete the DLQ entry and enqueue the job it describes, inside `pipe`'s MULTI."""
    job = job_from_entry(queue, entry)
    with_fresh_budget(gq(job), record)
    if result_ttl is not None:
        job.result_ttl = result_ttl
    store.remove_in(pipe, entry["job_id"], entry)
    queue.enqueue_job(job, pipeline=pipe)
    adopt(pipe, queue.name, [job.id])
    events.add(pipe, job.id, "replayed", {"from": "dlq", "manual": True})
    pipe.hincrby(store.keys.stats, "replayed", 1)
    return job


def requeue_failed_in(pipe, queue, job: Job, record: dict[str, Any]) -> None:
    """Re-enqueue an RQ job that RQ itself failed/stopped/canceled, inside `pipe`'s MULTI."""
    with_fresh_budget(gq(job), record)
    job.started_at = None
    job.ended_at = None
    job.last_heartbeat = None
    job.worker_name = None
    job._exc_info = None  # RQ has no public setter; left set, save() would write the old error back
    FailedJobRegistry(queue.name, connection=queue.connection, serializer=SERIALIZER).remove(job, pipeline=pipe)
    CanceledJobRegistry(queue.name, connection=queue.connection, serializer=SERIALIZER).remove(job, pipeline=pipe)
    queue.enqueue_job(job, pipeline=pipe)
    adopt(pipe, queue.name, [job.id])
    events.add(pipe, job.id, "replayed", {"from": "failed", "manual": True})
    pipe.hdel(job.key, "exc_info")  # save() only writes fields, never deletes one


# -- genqueue jobs retry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryOutcome:
    job_id: str
    queue: str
    previous_status: str
    attempts: int
    max_attempts: int
    charged: bool
    forced: bool


def retry_job(
    connection: Redis, store: DLQStore, job_id: str, *, force: bool = False, by: str | None = None
) -> RetryOutcome:
    """Back to queued with a fresh budget. NotFound (no job, no entry); Conflict (live or finished);
    MaxAttemptsReached (attempts ≥ max_attempts, unless `force`)."""
    job_key = Job.key_for(job_id)
    entry_key = store.keys.entry(job_id)
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(job_key, entry_key)
                try:
                    status = pipe.hget(job_key, "status")
                    if status is not None:
                        return _retry_rq_job(connection, pipe, store, job_id, text(status), force=force, by=by)
                    raw = pipe.get(entry_key)
                    if raw is None:
                        raise NotFound(f"no job {job_id} in {store.keys.queue} or its DLQ")
                    return _retry_dead(connection, pipe, store, decode(raw, job_id), force=force, by=by)
                except GenqueueError:
                    confirm_refusal(pipe)
                    raise
            except WatchError:
                pipe.reset()
                continue  # someone moved it meanwhile: look again, and refuse if it is live now
    raise Conflict(f"job {job_id} keeps changing state; try again")


def _check_attempts(job_id: str, history: list[dict], max_retries: int | None, force: bool) -> tuple[int, int]:
    attempts, max_attempts = attempts_made(history), _max_attempts(max_retries, failure_records(history))
    if attempts >= max_attempts and not force:
        raise MaxAttemptsReached(
            f"max attempts reached: {job_id} made {attempts} of {max_attempts} attempts; --force retries it anyway"
        )
    return attempts, max_attempts


def _retry_dead(
    connection: Redis, pipe, store: DLQStore, entry: dict[str, Any], *, force: bool, by: str | None
) -> RetryOutcome:
    job_id = entry["job_id"]
    history = entry.get("history") or []
    options = entry.get("options") or {}
    attempts, max_attempts = _check_attempts(job_id, history, options.get("max_retries"), force)
    kind, reason = (entry.get("error") or {}).get("kind"), entry.get("reason")
    charged = not is_free(kind, reason)
    record = manual_retry_record(
        charged=charged, via="jobs retry", previous_status="dead", kind=kind, reason=reason, forced=force, by=by
    )
    queue = make_queue(connection, store.keys.queue)
    pipe.multi()
    requeue_dead_in(pipe, queue, store, entry, record)
    pipe.execute()
    durable.confirm(connection, f"retry of job {job_id}")  # WAIT is not honoured inside MULTI
    return RetryOutcome(job_id, queue.name, "dead", attempts, max_attempts, charged, force)


def _retry_rq_job(
    connection: Redis, pipe, store: DLQStore, job_id: str, status: str, *, force: bool, by: str | None
) -> RetryOutcome:
    if status == JobStatus.FINISHED.value:
        raise Conflict(f"job {job_id} has finished; a finished job is not run again")
    if status not in RETRYABLE_RQ_STATUSES:
        if status in LIVE_RQ_STATUSES:  # a retry after NotDurable finds it queued: replicated by now?
            durable.confirm(connection, f"retry of job {job_id}")
        shown = {"started": "running"}.get(status, status)
        raise Conflict(f"job {job_id} is {shown}; only failed or dead jobs can be retried")
    job = fetch_job(connection, job_id)
    if job is None:
        raise WatchError("the job vanished between two reads")  # retried by the caller's loop
    try:
        _ = job.func_name  # plain RQ's pickle raises here (DeserializationError)
        if not isinstance(job.meta, dict):
            raise TypeError("its meta is not genqueue's JSON")
        meta = gq(job)
        history = meta["history"]
    except UNREADABLE_JOB_ERRORS as exc:
        raise UnreadableJob(
            f"job {job_id} cannot be read ({type(exc).__name__}): not written by genqueue (plain RQ's pickle?) "
            "or corrupt; nothing retried"
        ) from None
    attempts, max_attempts = _check_attempts(job_id, history, meta.get("max_retries"), force)
    last = last_failure(history) or {}
    charged = not is_free(last.get("kind"), last.get("reason"))
    record = manual_retry_record(
        charged=charged,
        via="jobs retry",
        previous_status=status,
        kind=last.get("kind"),
        reason=last.get("reason"),
        forced=force,
        by=by,
    )
    queue = make_queue(connection, job.origin or store.keys.queue)
    leftover = _leftover_entry(pipe, store, job_id) if store.keys.queue == queue.name else False
    pipe.multi()
    requeue_failed_in(pipe, queue, job, record)
    if leftover is not False:
        # The invariant says a job with a hash has no DLQ entry; one left over goes in the same EXEC.
        store.remove_in(pipe, job_id, leftover)
    pipe.execute()
    durable.confirm(connection, f"retry of job {job_id}")  # WAIT is not honoured inside MULTI
    return RetryOutcome(job_id, queue.name, status, attempts, max_attempts, charged, force)


def _leftover_entry(pipe: Pipeline, store: DLQStore, job_id: str) -> dict[str, Any] | None | Literal[False]:
    """The DLQ entry (None if corrupt), or False when there is none."""
    raw = pipe.get(store.keys.entry(job_id))
    if raw is None:
        return False
    try:
        return decode(raw, job_id)
    except CorruptEntry:
        return None
