"""`@genqueue.task`: declare a task, and enqueue it from Python.

    @genqueue.task(max_retries=3, timeout=120)
    def make_image(prompt: str, size: str = "1024x1024") -> dict: ...

    make_image("a fox")                                  # still an ordinary function
    make_image.enqueue(prompt="a fox")                   # a job with the task's own keyword arguments
    make_image.enqueue_with(kwargs={"prompt": "a fox"}, job_id="fox-1", in_=timedelta(minutes=5))
    make_image.enqueue_many([{"prompt": "a"}, {"prompt": "b"}])
    make_image.enqueue_with(kwargs={"prompt": "a fox"}, webhook="https://example.com/hooks")  # signed callback
    genqueue.enqueue_task("myapp.tasks.make_image", kwargs={"prompt": "a fox"})   # by name, unimported

`enqueue` takes only the task's arguments, so they never collide with enqueue options; those go to
`enqueue_with` (Dramatiq's send / send_with_options). Without `connection=`, a client from the environment
(Settings.from_env) is made on first use and kept for the process.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from redis import Redis

from ..errors import InvalidInput
from ..tasks.registry import TaskSpec, declare
from .cancel import CancelOutcome
from .enqueue import EnqueueResult, enqueue_task

P = ParamSpec("P")  # the task function's parameters
R = TypeVar("R")  # what it returns


@functools.cache
def _default_client() -> tuple[Redis, str]:
    from ..backend.connection import connect
    from ..settings import Settings

    settings = Settings.from_env()
    return connect(settings), settings.queue


class Task(Generic[P, R]):
    """The decorated function, still callable (with its own signature, for a type checker too), with enqueue
    methods."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn: Callable[P, R] = self.spec.fn  # the decorated function itself
        return fn(*args, **kwargs)

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
        priority: str | None = None,
        webhook: str | None = None,
        webhook_events: Sequence[str] | None = None,
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
            priority=priority,
            webhook=webhook,
            webhook_events=webhook_events,
        )

    def on_cancel(self, hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Declare (as a decorator) the hook run once when a running job of this task is canceled, with a
        `genqueue.CanceledJob` (job id, kwargs, who, why, last progress): e.g. to cancel the provider's
        prediction so it stops billing. Same as `@genqueue.task(on_cancel=hook)`; see worker/cancel_hook.py."""
        from ..tasks.registry import register

        if not callable(hook):
            raise InvalidInput(f"on_cancel takes a function, not {type(hook).__name__}")
        self.spec = register(dataclasses.replace(self.spec, on_cancel=hook))
        return hook

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
    from ..settings import Settings
    from .cancel import cancel_job

    settings = Settings.from_env()
    if connection is None:
        connection, _ = _default_client()
    store = DLQStore(connection, settings.queue, retention_s=settings.dlq_retention_s)
    return cancel_job(connection, store, job_id, by=by or "python", reason=reason)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    policy: Mapping[str, Mapping[str, Any]] | None = None,
    result_ttl: int | None = None,
    api: bool = False,
    limit_key: str | None = None,
    limits: Mapping[str, Any] | None = None,
    priority: Literal["high", "normal", "low"] | None = None,
    on_cancel: Callable[[Any], Any] | None = None,
    estimate: Mapping[str, float] | Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None,
    webhook: str | None = None,
    webhook_events: Sequence[str] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register `fn` as a task (`@task` or `@task(name=..., queue=..., max_retries=..., timeout=..., policy=...,
    result_ttl=..., api=..., limit_key=..., limits=..., priority=..., on_cancel=...,
    estimate=..., webhook=..., webhook_events=...)`); an unknown or bad option raises
    InvalidInput here, at import. The options a type checker sees (the overload above) are tasks.registry.OPTIONS."""

    def register(f: Callable[P, R]) -> Task[P, R]:
        return Task(declare(f, name=name, **options))

    return register(fn) if fn is not None else register
