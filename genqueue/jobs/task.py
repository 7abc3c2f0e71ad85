"""`@genqueue.task`: declare a task, and enqueue it from Python.

    @genqueue.task(max_retries=3, timeout=120)
    def make_image(prompt: str, size: str = "1024x1024") -> dict: ...

    make_image("a fox")                                  # still an ordinary function
    make_image.enqueue(prompt="a fox")                   # a job with the task's own keyword arguments
    make_image.enqueue_with(kwargs={"prompt": "a fox"}, job_id="fox-1", in_=timedelta(minutes=5))
    make_image.enqueue_many([{"prompt": "a"}, {"prompt": "b"}])
    genqueue.enqueue_task("myapp.tasks.make_image", kwargs={"prompt": "a fox"})   # by name, unimported

`enqueue` takes only the task's arguments, so they never collide with enqueue options; those go to
`enqueue_with` (Dramatiq's send / send_with_options). Without `connection=`, a client from the environment
(Settings.from_env) is made on first use and kept for the process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis import Redis

from ..tasks.registry import TaskSpec, declare
from .cancel import CancelOutcome
from .enqueue import EnqueueResult, enqueue_task


@functools.cache
def _default_client() -> tuple[Redis, str]:
    from ..backend.connection import connect
    from ..settings import Settings

    settings = Settings.from_env()
    return connect(settings), settings.queue


class Task:
    """The decorated function, still callable, with enqueue methods."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.spec.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<genqueue task {self.spec.name}>"

    def enqueue(self, **kwargs: Any) -> EnqueueResult:
        return self.enqueue_with(kwargs=kwargs)

    def enqueue_with(
        self,
        *,
        kwargs: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        in_: timedelta | None = None,
        at: datetime | None = None,
        max_retries: int | None = None,
        tenant: str | None = None,
        timeout: int | None = None,
        queue: str | None = None,
        connection: Redis | None = None,
    ) -> EnqueueResult:
        if connection is None:
            connection, default_queue = _default_client()
        else:
            from ..settings import Settings

            default_queue = Settings.from_env().queue
        return enqueue_task(
            connection,
            queue,
            self.spec.name,
            dict(kwargs or {}),
            job_id=job_id,
            in_=in_,
            at=at,
            max_retries=max_retries,
            tenant=tenant,
            timeout=timeout,
            default_queue=default_queue,
        )

    def cancel(self, job_id: str, *, reason: str | None = None, connection: Redis | None = None) -> CancelOutcome:
        """Cancel one job (of any task): see `genqueue.cancel`."""
        return cancel(job_id, reason=reason, connection=connection)

    def enqueue_many(self, many: Sequence[Mapping[str, Any]], **options: Any) -> list[EnqueueResult]:
        """One job per kwargs mapping (generated ids), each checked before any is enqueued."""
        from .enqueue import task_call

        for kwargs in many:
            task_call(self.spec.name, dict(kwargs))
        return [self.enqueue_with(kwargs=kwargs, **options) for kwargs in many]


def cancel(
    job_id: str, *, reason: str | None = None, by: str | None = None, connection: Redis | None = None
) -> CancelOutcome:
    """Cancel a job: queued, scheduled or parked at once; running: its worker stops it (the task sees
    `genqueue.current().cancelled`). Returns the outcome (status `canceled`, was it running); raises Conflict
    when the job has already finished, NotFound for an unknown id. Calling it twice is harmless."""
    from ..dlq.store import DLQStore
    from .cancel import cancel_job

    if connection is None:
        connection, queue = _default_client()
    else:
        from ..settings import Settings

        queue = Settings.from_env().queue
    return cancel_job(connection, DLQStore(connection, queue), job_id, by=by or "python", reason=reason)


def task(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any):
    """Register `fn` as a task (`@task` or `@task(name=..., queue=..., max_retries=..., timeout=..., policy=...,
    result_ttl=..., api=...)`); an unknown or bad option raises InvalidInput here, at import."""

    def register(f: Callable[..., Any]) -> Task:
        return Task(declare(f, name=name, **options))

    return register(fn) if fn is not None else register
