"""The job boundary: everything a worker does for one job runs inside it, and nothing escapes it.

Every worker class calls `run_job` around one job (GenWorker and GenSimpleWorker from `execute_job`, the
concurrent worker from each pool thread and for each async job): resolving the task, rendering its limit key
and taking the start claim (claims.py), binding the kwargs and running the task (job.py), classifying its
exception, building the failure record and the history, serialising the result, and the move that ends the
attempt. Whatever escapes becomes *that job's* failure (`fail_claimed`): it is classified when it can be (its
`__str__` and `__repr__` may raise: support/safe_text.py), PERMANENT when it can never succeed
(`UnrunnableJob`: a limit key that cannot render, for instance), and the job lands in exactly one place —
finished, a retry scheduled, or dead-lettered — through the ordinary claim-checked move (transition.py). When
even that move fails, one last attempt records a bare PERMANENT failure with a clean history; past that the
job stays claimed and the sweep finds it when the claim expires. The worker then goes on to its next job.

Only process-level exits pass through: a stop request (RQ's StopRequested), SystemExit (a cold shutdown, an
outage past GENQUEUE_REDIS_OUTAGE_S) and KeyboardInterrupt.

Sidekiq's rule is the anchor: a job can never take down its process.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.exceptions import StopRequested
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now as utcnow

from ..retry.kinds import ErrorKind
from ..retry.manager import Failure, RetryManager
from ..retry.meta import META_KEY
from ..support.logs import get_logger
from ..support.safe_text import describe, safe_str

if TYPE_CHECKING:
    from .failures import FailurePathMixin

log = get_logger("genqueue.worker")
MESSAGE_MAX = 2000


class UnrunnableJob(Exception):
    """What can never succeed, whatever the retries: a limit key that cannot render, for one. PERMANENT."""

    genqueue_kind = ErrorKind.PERMANENT


class JobParked(Exception):
    """The start claim parked the job: its limit key is at its concurrency or rate, or paused."""

    def __init__(self, job_id: str, key: str, why: str, wake_at: str) -> None:
        super().__init__(f"job {job_id} parked on {key} ({why})")
        self.job_id, self.key, self.why, self.wake_at = job_id, key, why, wake_at


class DuplicateDispatch(Exception):
    """A popped job id that is no longer queued: another copy already ran or runs it."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}, not queued")
        self.status = status


PASS_THROUGH = (StopRequested, SystemExit, KeyboardInterrupt)


def run_job(worker: FailurePathMixin, job: Job, queue: Queue, body: Callable[[], Any]) -> None:
    """Run `body` (everything for one job) so that nothing it raises stops the worker."""
    try:
        body()
    except DuplicateDispatch as dup:
        worker.connection.lrem(queue.intermediate_queue_key, 1, job.id)  # the copy this worker popped
        log.warning("job.duplicate_dispatch_skipped", job_id=job.id, queue=queue.name, status=dup.status)
    except JobParked as parked:  # not a failure: nothing ran, no attempt is counted
        log.info("limits.parked", job_id=job.id, queue=queue.name, key=parked.key, why=parked.why)
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # noqa: BLE001 - the boundary: it is the job's failure, never the worker's
        fail_escaped(worker, job, queue, exc)


def fail_escaped(worker: FailurePathMixin, job: Job, queue: Queue, exc: BaseException) -> None:
    """An exception that escaped RQ's own handling (before the task ran, or in the failure path itself)."""
    if worker.execution is None:
        # Nothing was claimed (the claim's round trip itself failed): the job is still `queued` in RQ's
        # intermediate list, where the sweep finds it and pushes it back once (sweep.requeue_stranded).
        log.warning("job.not_started", job_id=job.id, queue=queue.name, error=describe(exc))
        return
    fail_claimed(worker, job, queue, exc, "".join(_format(exc)))


def classify(manager: RetryManager, exc: BaseException, tb_text: str) -> Failure:
    """The job's Failure: the classifier's, or, if classifying raises (a user rule, a hostile exception), an
    UNKNOWN failure naming the exception's type, as the retry policy of an unclassified error decides."""
    if isinstance(exc, UnrunnableJob):
        return Failure(kind=ErrorKind.PERMANENT, type="UnrunnableJob", message=safe_str(exc)[:MESSAGE_MAX])
    try:
        return manager.failure_from_exception(exc, tb_text)
    except Exception as err:  # noqa: BLE001 - a failure must be recorded whatever the classifier does
        log.warning("retry.classify_failed", error_type=_type_name(exc), error=describe(err))
        return Failure(
            kind=ErrorKind.UNKNOWN,
            type=_type_name(exc),
            message=f"{safe_str(exc)} (classification failed: {describe(err)})"[:MESSAGE_MAX],
        )


def fail_claimed(worker: FailurePathMixin, job: Job, queue: Queue, exc: BaseException, tb_text: str) -> None:
    """The failure of a claimed job whose exception escaped RQ's perform_job (or never reached it)."""
    job._status = JobStatus.FAILED
    job.ended_at = job.ended_at or utcnow()
    record(worker, job, queue, classify(worker.retry_manager, exc, tb_text))


def record(worker: FailurePathMixin, job: Job, queue: Queue, failure: Failure) -> None:
    """The ordinary failure move (worker.record_job_failure); if that raises, `last_resort`. Either way the
    worker's claim on the job is over when this returns."""
    try:
        worker.record_job_failure(job, queue, failure)
    except PASS_THROUGH:
        raise
    except BaseException as err:  # noqa: BLE001 - see last_resort
        last_resort(worker, job, queue, failure, err)
    finally:
        worker.execution = None
        worker.current_claim = None


def last_resort(worker: FailurePathMixin, job: Job, queue: Queue, failure: Failure, err: BaseException) -> None:
    """Recording the failure raised (corrupt bookkeeping in the job, say a history that is not a list): record
    a bare PERMANENT failure on clean bookkeeping instead, so the job still lands in one place (the DLQ) with
    both errors named. Past that, the job keeps its claim and the sweep retries it when the claim expires."""
    log.warning("job.failure_record_failed", job_id=job.id, queue=queue.name, error=describe(err))
    meta = job.meta.get(META_KEY) if isinstance(job.meta, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    history, tenant = meta.get("history"), meta.get("tenant")
    clean = isinstance(history, list) and all(isinstance(h, dict) for h in history)
    job.meta = {META_KEY: {"history": history if clean else [], "tenant": tenant if isinstance(tenant, str) else None}}
    bare = Failure(
        kind=ErrorKind.PERMANENT,
        type=failure.type,
        message=f"{failure.message} (and recording it failed: {describe(err)})"[:MESSAGE_MAX],
    )
    try:
        worker.record_job_failure(job, queue, bare)
    except PASS_THROUGH:
        raise
    except BaseException as again:  # noqa: BLE001 - the worker goes on; the sweep has the job
        log.error("job.failure_unrecorded", job_id=job.id, queue=queue.name, error=describe(again))


def failure_text(exc_info: tuple[Any, Any, Any]) -> str:
    """traceback.format_exception, safe whatever the exception's __str__ does."""
    return "".join(_format(exc_info[1]))


def _format(exc: BaseException) -> list[str]:
    try:
        return traceback.format_exception(type(exc), exc, exc.__traceback__)
    except Exception:  # noqa: BLE001 - a hostile exception: its type is all we can say
        return [describe(exc)]


def _type_name(exc: BaseException) -> str:
    return describe(exc).split(":", 1)[0]
