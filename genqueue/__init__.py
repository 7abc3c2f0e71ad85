"""genqueue: Redis-backed workers for generation jobs, with classified retries and a dead-letter queue.

Public API (imported lazily, so `genqueue --help` stays fast):

    from genqueue import task, current, enqueue_task          # your own tasks (docs/tasks.md)
    from genqueue import Settings, connect, enqueue, RetryManager, RetryPolicy, ErrorKind
    from genqueue import TransientError, RateLimited, PermanentError, DLQStore, build_worker
    from genqueue import job_status, retry_job, submit_run, run_snapshot, retry_failed, cancel, JobCanceled
    from genqueue import CanceledJob                          # what a task's on_cancel hook is given
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads its module on first use
    from .backend.connection import connect
    from .dlq.replay import replay
    from .dlq.store import DLQStore, Filters
    from .errors import BudgetSpent
    from .jobs.enqueue import EnqueueResult, enqueue, enqueue_many, enqueue_task
    from .jobs.events import JobDeadLettered
    from .jobs.manual_retry import retry_job
    from .jobs.status import job_status
    from .jobs.task import Task, cancel, task
    from .retry import ErrorKind, PermanentError, RateLimited, Reason, RetryManager, RetryPolicy, TransientError
    from .runs.store import retry_failed
    from .runs.store import snapshot as run_snapshot
    from .runs.store import submit as submit_run
    from .settings import Settings
    from .tasks.context import TaskContext, current
    from .tasks.generate import Provider, generate
    from .worker import GenSimpleWorker, GenWorker, build_worker
    from .worker.cancel import JobCanceled
    from .worker.cancel_hook import CanceledJob

from .support.version import installed_version

__version__ = installed_version()  # the one version: pyproject.toml's, from the installed metadata

_EXPORTS = {
    "Settings": "genqueue.settings",
    "BudgetSpent": "genqueue.errors",
    "connect": "genqueue.backend.connection",
    "enqueue": "genqueue.jobs.enqueue",
    "EnqueueResult": "genqueue.jobs.enqueue",
    "enqueue_many": "genqueue.jobs.enqueue",
    "enqueue_task": "genqueue.jobs.enqueue",
    "task": "genqueue.jobs.task",
    "cancel": "genqueue.jobs.task",
    "JobCanceled": "genqueue.worker.cancel",
    "CanceledJob": "genqueue.worker.cancel_hook",
    "JobDeadLettered": "genqueue.jobs.events",
    "Task": "genqueue.jobs.task",
    "current": "genqueue.tasks.context",
    "TaskContext": "genqueue.tasks.context",
    "generate": "genqueue.tasks.generate",
    "Provider": "genqueue.tasks.generate",
    "RetryManager": "genqueue.retry",
    "RetryPolicy": "genqueue.retry",
    "ErrorKind": "genqueue.retry",
    "Reason": "genqueue.retry",
    "TransientError": "genqueue.retry",
    "RateLimited": "genqueue.retry",
    "PermanentError": "genqueue.retry",
    "DLQStore": "genqueue.dlq.store",
    "Filters": "genqueue.dlq.store",
    "replay": "genqueue.dlq.replay",
    "build_worker": "genqueue.worker",
    "GenWorker": "genqueue.worker",
    "GenSimpleWorker": "genqueue.worker",
    "job_status": "genqueue.jobs.status",
    "retry_job": "genqueue.jobs.manual_retry",
    "submit_run": "genqueue.runs.store",
    "run_snapshot": "genqueue.runs.store",
    "retry_failed": "genqueue.runs.store",
}

_ALIASES = {"submit_run": "submit", "run_snapshot": "snapshot"}  # public name -> name in its module

__all__ = [  # _EXPORTS' keys, spelled out for type checkers and linters
    "BudgetSpent",
    "DLQStore",
    "EnqueueResult",
    "ErrorKind",
    "Filters",
    "GenSimpleWorker",
    "GenWorker",
    "JobCanceled",
    "CanceledJob",
    "JobDeadLettered",
    "PermanentError",
    "Provider",
    "RateLimited",
    "Reason",
    "RetryManager",
    "RetryPolicy",
    "Settings",
    "Task",
    "TaskContext",
    "TransientError",
    "build_worker",
    "cancel",
    "connect",
    "current",
    "enqueue",
    "enqueue_many",
    "enqueue_task",
    "generate",
    "job_status",
    "replay",
    "retry_failed",
    "retry_job",
    "run_snapshot",
    "submit_run",
    "task",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genqueue' has no attribute {name!r}")
    return getattr(importlib.import_module(module), _ALIASES.get(name, name))
