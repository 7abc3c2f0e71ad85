"""A task's `on_cancel` hook: run once when a running job of it is canceled, so the provider stops billing.

    @genqueue.task(on_cancel=stop_prediction)       # or: @make_video.on_cancel
    def make_video(prompt: str) -> dict:
        prediction = replicate.predictions.create(...)
        genqueue.current().progress(data={"prediction": prediction.id})   # what the hook will need
        ...

    def stop_prediction(job: genqueue.CanceledJob) -> None:
        replicate.predictions.cancel(job.progress["data"]["prediction"])

Where it runs: in the worker that runs the job, as soon as the worker sees the cancel request (its heartbeat's
CancelWatch, in a thread of its own so a slow hook delays nothing), or at the latest in the move that lands the
job in `canceled` (worker/cancel.finish_canceled) — whichever comes first; a `SET NX` key per job
(backend/keys.cancel_hook) makes it once, across the forking worker's parent and work horse. A job canceled
before it ran (queued, scheduled, parked) made no provider call: its hook does not run. Errors in the hook are
logged (`job.on_cancel_failed`), never retried, and never stop the worker or change the job's outcome.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from ..backend import keys
from ..backend.queues import fetch_job
from ..support.logs import get_logger
from ..support.safe_text import describe
from ..tasks.registry import lookup

log = get_logger("genqueue.worker")
HOOK_MARK_TTL_S = 7 * 24 * 3600  # as long as a canceled job stays inspectable (worker/cancel.CANCEL_RECORD_TTL_S)


@dataclass(frozen=True, slots=True)
class CanceledJob:
    """What an `on_cancel` hook is given."""

    job_id: str
    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)  # the job's keyword arguments
    by: str | None = None  # who canceled it
    reason: str | None = None
    progress: dict[str, Any] | None = None  # the last `current().progress(...)`: fraction, message, data, at


def _json_field(connection: Redis, job_key: str, name: str) -> dict[str, Any] | None:
    raw = connection.hget(job_key, name)
    try:
        value = None if raw is None else json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run_on_cancel(connection: Redis, job_id: str) -> bool:
    """Run the job's task's `on_cancel` hook if it has one and nobody ran it yet; True when it ran here (even
    if it raised). Never raises."""
    try:
        job = fetch_job(connection, job_id)
        spec = None if job is None else lookup(job.func_name)
        if job is None or spec is None or spec.on_cancel is None:
            return False
        if not connection.set(keys.cancel_hook(job_id), "1", nx=True, ex=HOOK_MARK_TTL_S):
            return False  # ran already (the other side of a fork, or the watch before the move)
        record = _json_field(connection, job.key, "genqueue_cancel") or {}
        request = connection.get(keys.cancel_request(job_id))
        if request is not None:
            try:
                record = json.loads(request)
            except ValueError:
                pass
        canceled = CanceledJob(
            job_id,
            spec.name,
            dict(job.kwargs),
            record.get("by") if isinstance(record, dict) else None,
            record.get("reason") if isinstance(record, dict) else None,
            _json_field(connection, job.key, "genqueue_progress"),
        )
    except Exception as exc:  # noqa: BLE001 - a hook that cannot even be looked up must not stop a worker
        log.warning("job.on_cancel_failed", job_id=job_id, error=describe(exc))
        return False
    try:
        spec.on_cancel(canceled)
        log.info("job.on_cancel_ran", job_id=job_id, task=spec.name)
    except Exception as exc:  # noqa: BLE001 - the hook's own failure: logged, never the worker's
        log.warning("job.on_cancel_failed", job_id=job_id, task=spec.name, error=describe(exc))
    return True


def run_on_cancel_in_thread(connection: Redis, job_id: str) -> threading.Thread:
    """run_on_cancel in a daemon thread: the heartbeat that saw the request goes on at once."""
    thread = threading.Thread(target=run_on_cancel, args=(connection, job_id), name=f"on-cancel-{job_id}", daemon=True)
    thread.start()
    return thread
