"""What the worker mixins (claims, pop, failures, duties) may use of each other and of RQ's BaseWorker.

At run time the mixins stand on `object` and are combined before an RQ worker class (classes.py); for the type
checker they stand on `WorkerBase`, RQ's BaseWorker plus the attributes and methods genqueue adds, so each
mixin is checked against the worker it becomes part of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker.base import BaseWorker

    from ..dlq.store import DLQStore
    from ..retry.manager import Failure, RetryManager
    from ..settings import Settings
    from .limiting import JobLimit
    from .liveness import Claim
    from .schedule import DueJobMover

    class WorkerBase(BaseWorker):
        settings: Settings
        retry_manager: RetryManager
        _failures: dict[str, Failure]
        _pending: dict[str, Any]
        _stores: dict[str, DLQStore]
        current_claim: Claim | None
        _limit: JobLimit | None
        _mover: DueJobMover
        _prepared_job_id: str | None

        def store_for(self, queue_name: str) -> DLQStore:
            raise NotImplementedError

        def record_job_failure(self, job: Job, queue: Queue, failure: Failure) -> None:
            raise NotImplementedError

        def _flush_bookkeeping(self, pipe: Any) -> None:
            raise NotImplementedError

        def _bookkeeping_pipe(self) -> Any:
            raise NotImplementedError

        def _intermediate_key(self, queue_name: str) -> str:
            raise NotImplementedError

        def live_claims(self) -> Any:
            raise NotImplementedError

else:
    WorkerBase = object
