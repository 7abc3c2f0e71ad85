"""The failure path: RQ's hooks for a failed job, routed through genqueue's classification and move.

Why these seams (RQ 2.12, rq/worker/base.py):
- `perform_job` (in the work horse, or in-process for SimpleWorker) calls `handle_exception(job, *exc_info)`
  and then `handle_job_failure(job, queue, exc_string=...)`. Only `handle_exception` sees the exception
  object, so classification happens there and the Failure is kept for the next call.
- `monitor_work_horse` (in the parent, forking worker) calls `handle_job_failure` too when the horse died
  without reporting: SIGKILL, OOM, segfault. No Failure was recorded then, which is how we know it is a
  CRASH — not the job's fault, so it is charged to the crash budget, not the retry budget.
- Overriding `handle_job_failure` therefore covers both paths, and replaces RQ's own retry/FailedJobRegistry
  handling with one transaction (transition.move_failed_job). Jobs stopped on purpose (`rq` stop-job
  command) keep RQ's semantics.
Neither hook raises: classifying (boundary.classify) and recording (boundary.record) are the job boundary's.
"""

from __future__ import annotations

from rq.worker.base import WorkerStatus

from ..dlq.store import DLQStore
from ..retry.manager import Failure
from ..support.logs import get_logger
from ..support.safe_text import describe, safe_str
from ..tasks.registry import UnknownTask
from . import boundary
from .base import WorkerBase
from .transition import record_failure

log = get_logger("genqueue.worker")


class FailurePathMixin(WorkerBase):
    def store_for(self, queue_name: str) -> DLQStore:
        if queue_name not in self._stores:
            self._stores[queue_name] = DLQStore(self.connection, queue_name, retention_s=self.settings.dlq_retention_s)
        return self._stores[queue_name]

    def execute_job(self, job, queue):
        """Everything for one job, inside the job boundary (boundary.py)."""
        try:
            boundary.run_job(self, job, queue, lambda: super(FailurePathMixin, self).execute_job(job, queue))
        finally:
            self.current_claim = None
            self.set_state(WorkerStatus.IDLE)

    def handle_exception(self, job, *exc_info):
        exc = exc_info[1]
        if isinstance(exc, UnknownTask):
            log.warning("task.unknown", job_id=job.id, queue=job.origin, error=safe_str(exc)[:300])
        self._failures[job.id] = boundary.classify(self.retry_manager, exc, boundary.failure_text(exc_info))
        for handler in self._exc_handlers:  # user handlers still run; RQ's traceback log line does not
            try:
                if handler(job, *exc_info) is False:
                    break
            except Exception as err:  # noqa: BLE001 - a user handler cannot fail the job's failure path
                log.warning("worker.exception_handler_failed", job_id=job.id, error=describe(err))

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        if self._stopped_job_id == job.id:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string)
        failure = self._failures.pop(job.id, None)
        if failure is None:  # the horse died without reaching handle_exception
            job.meta = job.get_meta(refresh=True)
            failure = self.retry_manager.crash_failure(exc_string.strip() or "work horse died")
        boundary.record(self, job, queue, failure)

    def record_job_failure(self, job, queue, failure: Failure) -> None:
        """The failure move (transition.record_failure) with this worker's bookkeeping in the same step."""

        def bookkeeping(pipe) -> None:
            self._flush_bookkeeping(pipe)
            self.set_current_job_id(None, pipeline=pipe)
            self.increment_failed_job_count(pipeline=pipe)

        record_failure(
            self.connection,
            job,
            queue,
            failure,
            self.retry_manager,
            self.store_for(queue.name),
            execution=self.execution,
            worker_name=self.name,
            also=bookkeeping,
        )
