"""GenWorker / GenSimpleWorker: RQ workers whose job boundary, claims, failure path and duties are genqueue's.

Each concern is a mixin of its own module, combined here before RQ's worker class:
- boundary.py — the job boundary every worker class runs each job in: nothing a job does stops the worker;
- claims.py — the start claim (limit key rendered, slot taken) and the claim-checked success move;
- pop.py — the pop, with the worker's own bookkeeping riding along;
- failures.py — RQ's failure hooks → classification → one move (transition.py);
- duties.py — start/stop, the heartbeat thread and its periodic duties, the command channel.
concurrent.py builds the `--concurrency N` worker on GenSimpleWorker.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from typing import Any

from rq import SimpleWorker, Worker

from ..backend.queues import SERIALIZER, make_queue
from ..retry.manager import Failure, RetryManager
from ..settings import Settings
from ..support.logs import get_logger
from .boundary import DuplicateDispatch, JobParked, UnrunnableJob
from .cancel import job_id_of
from .claims import ClaimsMixin
from .duties import DutiesMixin
from .failures import FailurePathMixin
from .job import GenJob
from .liveness import Claim
from .pop import BURST_PARKED_WAIT_S, PopMixin

__all__ = [
    "BURST_PARKED_WAIT_S",
    "DuplicateDispatch",
    "GenMixin",
    "GenSimpleWorker",
    "GenWorker",
    "JobParked",
    "UnrunnableJob",
    "build_worker",
]
PR_SET_PDEATHSIG = 1
log = get_logger("genqueue.worker")


class GenMixin(FailurePathMixin, ClaimsMixin, PopMixin, DutiesMixin):
    """Mixed in before an RQ worker class; see the module docstring for what each part does."""

    job_class = GenJob  # registered tasks only (worker/job.py)

    def __init__(self, *args: Any, settings: Settings, retry_manager: RetryManager | None = None, **kwargs: Any):
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.retry_manager = retry_manager or RetryManager.from_settings(settings)
        self._failures: dict[str, Failure] = {}
        self._pending: dict[str, Any] = {}  # worker bookkeeping sent with the next round trip
        self._stores = {}
        self.current_claim: Claim | None = None


class GenWorker(GenMixin, Worker):
    """Forking worker: each job runs in a work horse; a killed horse is a CRASH."""

    def main_work_horse(self, job, queue):
        # If this worker is SIGKILLed, RQ's horse (in its own process group) would run on as an orphan and
        # could finish a job the sweep has already retried. Ask the kernel to kill it with its parent.
        set_parent_death_signal(self._parent_pid)
        super().main_work_horse(job, queue)

    def cancel_stop(self, job_id: str) -> None:
        """The grace is over: kill the work horse (the job then ends `canceled`, cancel.py)."""
        if job_id_of(self.current_claim) == job_id and self.horse_pid:
            log.warning("job.cancel_killing_horse", job_id=job_id, horse_pid=self.horse_pid)
            self.kill_horse()

    def fork_work_horse(self, job, queue):
        self._parent_pid = os.getpid()
        # Objects the worker already holds go to the GC's permanent generation, so a collection in the
        # work horse does not walk (and, by touching their headers, copy-on-write) the parent's heap.
        gc.freeze()
        super().fork_work_horse(job, queue)


class GenSimpleWorker(GenMixin, SimpleWorker):
    """In-process worker (no fork): cheaper per job, but a crash takes the worker down with it."""


def set_parent_death_signal(parent_pid: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG). Elsewhere: no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def build_worker(
    connection,
    settings: Settings,
    queue_names: list[str],
    *,
    simple: bool = False,
    concurrency: int | None = None,
    **kwargs,
):
    queues = [make_queue(connection, name) for name in queue_names]
    if concurrency:  # up to N jobs in this process: async tasks on a loop, sync tasks on threads
        from .concurrent import ConcurrentWorker

        return ConcurrentWorker(
            queues,
            connection=connection,
            settings=settings,
            concurrency=concurrency,
            shutdown_grace_s=settings.shutdown_grace_s,
            **kwargs,
        )
    cls = GenSimpleWorker if simple else GenWorker
    return cls(queues, connection=connection, settings=settings, **kwargs)
