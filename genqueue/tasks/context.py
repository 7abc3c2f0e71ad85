"""What a running task can know about its job: `genqueue.current()` inside a task.

Use the job id as an idempotency key towards a provider, so a retry after a timeout is not billed twice;
`attempt` counts every attempt across retries and replays; `deadline` is when the worker will stop the
attempt (the job timeout), as a Unix time."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskContext:
    job_id: str
    task: str
    queue: str
    attempt: int
    replays: int
    tenant: str | None
    deadline: float | None


_current: ContextVar[TaskContext | None] = ContextVar("genqueue_task", default=None)


def current() -> TaskContext | None:
    """The context of the task running in this thread or asyncio task; None outside a task."""
    return _current.get()


def set_current(ctx: TaskContext | None):
    return _current.set(ctx)


def reset(token) -> None:
    _current.reset(token)
