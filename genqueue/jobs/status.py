"""A job's status across RQ and the DLQ, for `genqueue jobs show`, the API and the dashboard."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus

from ..backend import keys
from ..backend.queues import UNREADABLE_JOB_ERRORS, fetch_job
from ..dlq.entry import call_payload, decode, iso, payload_of
from ..dlq.store import DLQStore
from ..errors import NotFound, UnreadableJob
from ..retry.kinds import ErrorKind
from ..retry.meta import MANUAL_RETRY, failures, gq
from ..retry.policy import DEFAULT_POLICIES
from ..support.secrets import mask, mask_url
from ..tasks.bounds import MAX_DEPTH, nesting_exceeds
from ..tasks.context import PROGRESS_FIELD
from ..tenants.tenancy import entry_tenant, job_tenant
from ..worker.cancel import CANCEL_FIELD

RQ_TO_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.STARTED: "running",
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.DEFERRED: "parked",  # genqueue never uses RQ dependencies: deferred is a job parked on its limit
    JobStatus.STOPPED: "stopped",
    JobStatus.CANCELED: "canceled",
}


def _ts(dt) -> str | None:
    return None if dt is None else iso(dt.timestamp())


UNREADABLE = UNREADABLE_JOB_ERRORS  # also nesting past the stack in mask/json


def job_status(connection: Redis, store: DLQStore, job_id: str) -> dict[str, Any]:
    """The job's status; UnreadableJob (CorruptEntry for a DLQ entry) for data genqueue cannot read."""
    try:
        status = _job_status(connection, store, job_id)
        if nesting_exceeds(status["payload"], MAX_DEPTH + 2):  # stored past the bounds: no reader could show it
            raise UnreadableJob(f"job {job_id} is nested too deeply to show (stored before kwargs were bounded)")
        return status
    except UnreadableJob:
        raise
    except UNREADABLE as exc:
        raise UnreadableJob(
            f"job {job_id} cannot be read ({type(exc).__name__}): not written by genqueue (plain RQ's pickle?) "
            "or corrupt"
        ) from None


def _find(connection: Redis, store: DLQStore, job_id: str) -> Job | bytes:
    """The RQ job, else its DLQ entry (raw); NotFound when neither is there."""
    # Two reads (RQ hash, then DLQ entry) can straddle a replay's EXEC, which moves the job from the second
    # place to the first: read again before calling it missing (seen as a 404 under concurrent retries).
    for _ in range(3):
        job = fetch_job(connection, job_id)
        if job is not None:
            return job
        raw = store.get_raw(job_id)
        if raw is not None:
            return raw
    raise NotFound(f"no job {job_id} in {store.keys.queue} or its DLQ")


def _job_status(connection: Redis, store: DLQStore, job_id: str) -> dict[str, Any]:
    job = _find(connection, store, job_id)
    if isinstance(job, bytes):
        entry = decode(job, job_id)
        history = entry.get("history", [])
        made = failures(history)
        return {
            "id": job_id,
            "queue": entry.get("queue"),
            "type": entry.get("func"),
            "payload": mask(payload_of(entry)),
            "status": "dead",
            "reason": entry.get("reason"),
            "attempts": len(made),
            "max_attempts": max_attempts(entry.get("options", {}).get("max_retries"), made),
            "last_error": (entry.get("error") or {}).get("message"),
            "created_at": entry.get("enqueued_at"),
            "scheduled_at": None,
            "started_at": made[-1].get("started_at") if made else None,
            "completed_at": entry.get("failed_at"),
            "replays": entry.get("replays", 0),
            "tenant": entry_tenant(entry),
            "history": history,
        }
    meta = gq(job)
    history = meta.get("history", [])
    rq_status = job.get_status(refresh=False)
    cancel = cancel_record(connection, job_id, rq_status)
    if rq_status == JobStatus.CANCELED and cancel and not any(h.get("action") == "canceled" for h in history):
        history = [*history, {"action": "canceled", **cancel}]  # canceled before it ran: the record is the job's
    status = RQ_TO_STATUS.get(rq_status, str(rq_status))
    if status == "scheduled" and history:
        status = "retrying"
    scheduled_at = None
    if rq_status == JobStatus.SCHEDULED:
        from rq.registry import ScheduledJobRegistry

        # One ZSCORE, not `in` then get_scheduled_time: the scheduler may move the job between two reads
        # (get_scheduled_time then raises NoSuchJobError; seen in CI as a flaky status poll).
        score = connection.zscore(ScheduledJobRegistry(job.origin, connection=connection).key, job_id)
        scheduled_at = None if score is None else iso(score)
    made = failures(history)
    attempts = len(made) + (1 if rq_status in (JobStatus.FINISHED, JobStatus.STARTED) else 0)
    return {
        "id": job_id,
        "queue": job.origin,
        "type": job.func_name,
        "payload": mask(call_payload(job.args, job.kwargs)),
        "status": status,
        "attempts": attempts,
        "max_attempts": max_attempts(meta.get("max_retries"), made),
        # a manual retry clears the last error: the job is starting over
        "last_error": made[-1]["error"]["message"] if made and history[-1].get("action") != MANUAL_RETRY else None,
        "created_at": _ts(job.created_at),
        "scheduled_at": scheduled_at,
        "started_at": _ts(job.started_at),
        "completed_at": _ts(job.ended_at) if rq_status == JobStatus.FINISHED else None,
        "replays": meta.get("replays", 0),
        "tenant": job_tenant(meta, job.args[0] if job.args else job.kwargs),
        "history": history,
        "result": mask(_result(job)) if rq_status == JobStatus.FINISHED else None,
        "cancel": cancel,  # who canceled it, when, why; for a running job: requested, its worker stops it
        "progress": progress_of(job),  # the task's last genqueue.current().progress(...), or None
        "webhook": webhook_of(meta),  # {"url" (masked), "events"} when the job calls one back, else None
    }


def webhook_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    url = meta.get("webhook")
    if not isinstance(url, str):
        return None
    return {"url": mask_url(url), "events": list(meta.get("webhook_events") or [])}


def progress_of(job) -> dict[str, Any] | None:
    raw = job.connection.hget(job.key, PROGRESS_FIELD)
    try:
        progress = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(progress, dict):
        return None
    at = progress.get("at")
    return {
        "fraction": progress.get("fraction"),
        "message": progress.get("message"),
        "data": mask(progress.get("data")),
        "at": iso(at) if isinstance(at, (int, float)) else None,
    }


def cancel_record(connection: Redis, job_id: str, rq_status) -> dict[str, Any] | None:
    """The cancel record of a canceled job (on its hash) or of a running one (the request key), else None."""
    if rq_status == JobStatus.CANCELED:
        raw = connection.hget(keys.rq_job(job_id), CANCEL_FIELD)
    elif rq_status == JobStatus.STARTED:
        raw = connection.get(keys.cancel_request(job_id))
    else:
        return None
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _result(job) -> Any:
    """The return value RQ stored (JSON), or None when it has expired or cannot be read."""
    try:
        return job.return_value(refresh=True)
    except Exception:  # noqa: BLE001 - a result is shown when it can be read, never fails the status
        return None


def without_tracebacks(info: dict[str, Any]) -> dict[str, Any]:
    """The status as a non-admin sees it: every `traceback` field gone (attempt records, errors), because a
    traceback shows the service's internals (paths, library versions, code). The payload and result are left as
    they are."""
    return {k: (v if k in ("payload", "result") else _drop_tracebacks(v)) for k, v in info.items()}


def _drop_tracebacks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_tracebacks(v) for k, v in value.items() if k != "traceback"}
    if isinstance(value, list):
        return [_drop_tracebacks(v) for v in value]
    return value


def max_attempts(max_retries: int | None, history: list[dict[str, Any]]) -> int:
    """1 + the retry budget: the per-job override, else the largest maximum among the retryable kinds
    this job has failed with (TRANSIENT's when it has not failed yet)."""
    if max_retries is not None:
        return 1 + int(max_retries)
    kinds = {h["kind"] for h in history if isinstance(h.get("kind"), str)}
    kinds -= {ErrorKind.PERMANENT.value, ErrorKind.CRASH.value}
    budgets = [DEFAULT_POLICIES[ErrorKind(k)].max_retries for k in kinds if k in ErrorKind.__members__]
    return 1 + max(budgets, default=DEFAULT_POLICIES[ErrorKind.TRANSIENT].max_retries)
