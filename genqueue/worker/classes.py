"""GenWorker / GenSimpleWorker: RQ workers whose failure path is genqueue's.

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
"""

from __future__ import annotations

import traceback
from typing import Any

import structlog
from rq import SimpleWorker, Worker

from ..dlq.store import DLQStore
from ..jobmeta import gq, retry_state
from ..queues import SERIALIZER, make_queue
from ..retry.manager import Failure, RetryManager, decision_record
from ..settings import Settings
from .transition import _ts, dead_letter_entry, move_failed_job

log = structlog.get_logger("genqueue.worker")


class FailurePathMixin:
    """Mixed in before an RQ worker class; see the module docstring for the seams."""

    def __init__(self, *args: Any, settings: Settings, retry_manager: RetryManager | None = None, **kwargs: Any):
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.retry_manager = retry_manager or RetryManager(scale=settings.backoff_scale)
        self._failures: dict[str, Failure] = {}
        self._stores: dict[str, DLQStore] = {}

    def store_for(self, queue_name: str) -> DLQStore:
        if queue_name not in self._stores:
            self._stores[queue_name] = DLQStore(
                self.connection, queue_name, retention_s=self.settings.dlq_retention_s
            )
        return self._stores[queue_name]

    def handle_exception(self, job, *exc_info):
        exc = exc_info[1]
        tb_text = "".join(traceback.format_exception(*exc_info))
        self._failures[job.id] = self.retry_manager.failure_from_exception(exc, tb_text)
        for handler in self._exc_handlers:  # user handlers still run; RQ's traceback log line does not
            if handler(job, *exc_info) is False:
                break

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        if self._stopped_job_id == job.id:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string)
        failure = self._failures.pop(job.id, None)
        if failure is None:  # the horse died without reaching handle_exception
            job.meta = job.get_meta(refresh=True)
            failure = self.retry_manager.crash_failure(exc_string.strip() or "work horse died")
        self.record_failure(job, queue, failure)

    def record_failure(self, job, queue, failure: Failure) -> None:
        state = retry_state(job)
        decision = self.retry_manager.decide(failure, state)
        meta = gq(job)
        meta["history"].append(
            decision_record(
                decision, failure, started_at=_ts(job.started_at), ended_at=_ts(job.ended_at), worker=self.name
            )
        )
        if decision.charged:
            meta["retries"] = state.retries + 1
        if str(decision.kind) == "CRASH":
            meta["crashes"] = state.crashes + 1
        store = self.store_for(queue.name)
        entry = None if decision.is_retry else dead_letter_entry(job, queue.name, decision, failure, store)
        execution_key = self.execution.composite_key if self.execution is not None else None
        moved = move_failed_job(
            self, job, queue, decision, entry, store, queue.started_job_registry.key, execution_key
        )
        bound = log.bind(job_id=job.id, queue=queue.name, attempt=decision.attempt, kind=str(decision.kind))
        if not moved:
            bound.warning("retry.claimed_elsewhere")
        elif decision.is_retry:
            bound.info("retry.scheduled", delay=round(decision.delay or 0, 3), retry_after=decision.retry_after,
                       charged=decision.charged, error=failure.message[:200])
        else:
            bound.warning("retry.dead_lettered", reason=str(decision.reason), error=failure.message[:200])


class GenWorker(FailurePathMixin, Worker):
    """Forking worker: each job runs in a work horse; a killed horse is a CRASH."""


class GenSimpleWorker(FailurePathMixin, SimpleWorker):
    """In-process worker (no fork): cheaper per job, but a crash takes the worker down with it."""


def build_worker(connection, settings: Settings, queue_names: list[str], *, simple: bool = False, **kwargs):
    queues = [make_queue(connection, name) for name in queue_names]
    cls = GenSimpleWorker if simple else GenWorker
    return cls(queues, connection=connection, settings=settings, **kwargs)
