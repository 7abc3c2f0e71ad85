"""The job class genqueue workers run: registered tasks only (tasks/registry.py).

RQ's `Job.func` imports whatever dotted path the job names (`import_attribute`: `os.system` included, the
open rq/rq#2191), and its callbacks and webhooks are taken from the job hash as well. A genqueue worker
resolves the function name in the task registry instead and raises UnknownTask — dead-lettered with reason
`unknown_task` — for anything else, including a job whose data is not JSON (pickled by a plain RQ client).
Callbacks and webhooks are never run: genqueue jobs are created without them, so any found were planted.

The call itself: the arguments are bound against the function's signature (a mismatch is a TypeError:
PERMANENT), the task sees its context (`genqueue.current()`), an `async def` task runs on an event loop,
and the result must be JSON of at most MAX_RESULT_BYTES — store large outputs elsewhere and return a URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from rq.job import Job

from ..retry.kinds import ErrorKind
from ..retry.meta import attempt_number, gq
from ..support.logs import get_logger
from ..support.safe_text import describe
from ..tasks.context import Live, TaskContext, reset, set_current
from ..tasks.registry import TaskSpec, UnknownTask, bind, lookup

MAX_RESULT_BYTES = 1024 * 1024
log = get_logger("genqueue.worker")


class UnreadableJob(UnknownTask):
    """The job's data is not genqueue's JSON: nothing in it is trusted, nothing is run."""


class ResultTooLarge(ValueError):
    genqueue_kind = ErrorKind.PERMANENT


class GenJob(Job):
    @property
    def func(self):
        name = self.func_name  # UnreadableJob when the data is not JSON
        spec = lookup(name)
        if spec is None:
            raise UnknownTask(f"{name!r} is not a registered task (start the worker with --tasks MODULE)")
        return lambda *args, **kwargs: run_task(spec, self, args, kwargs)

    def _deserialize_data(self) -> None:
        try:
            super()._deserialize_data()
        except Exception as exc:  # noqa: BLE001 - any undecodable payload: the job is refused, not run
            raise UnreadableJob(f"job data is not genqueue JSON ({type(exc).__name__}); nothing was run") from None

    # Never run what the job hash names besides its task (see the module docstring).
    success_callback = failure_callback = stopped_callback = property(lambda self: None)

    def execute_success_callback(self, *args: Any, **kwargs: Any) -> None:
        return None

    def execute_failure_callback(self, *args: Any, **kwargs: Any) -> None:
        return None

    def execute_stopped_callback(self, *args: Any, **kwargs: Any) -> None:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        return None


def context_for(spec: TaskSpec, job: Job) -> TaskContext:
    meta = gq(job)
    started = job.started_at.timestamp() if job.started_at else time.time()
    return TaskContext(
        job_id=job.id,
        task=spec.name,
        queue=job.origin,
        attempt=attempt_number(job),
        replays=int(meta.get("replays") or 0),
        tenant=meta.get("tenant"),
        deadline=started + job.timeout if job.timeout else None,
        live=Live(job.connection),
    )


def run_task(spec: TaskSpec, job: Job, args: tuple, kwargs: dict) -> Any:
    if not spec.positional and args:
        raise TypeError(f"task {spec.name} takes keyword arguments only")
    try:
        bound = bind(spec, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - InvalidInput from bind: the call cannot succeed, ever
        raise TypeError(str(exc)) from None
    ctx = context_for(spec, job)
    token = set_current(ctx)
    try:
        result = spec.fn(*bound.args, **bound.kwargs)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    finally:
        reset(token)
        flush_progress(ctx)
    check_result(spec, result)
    return result


def flush_progress(ctx: TaskContext) -> None:
    """The task's last progress, kept back by the throttle, written before the move that ends the attempt."""
    try:
        ctx.flush_progress()
    except Exception as exc:  # noqa: BLE001 - progress is informative: it never fails the job
        log.warning("job.progress_unwritten", job_id=ctx.job_id, error=describe(exc))


def check_result(spec: TaskSpec, result: Any) -> None:
    try:
        size = len(json.dumps(result, separators=(",", ":")))
    except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, RecursionError (too deep): never storable
        raise TypeError(f"task {spec.name} returned a value that is not JSON: {describe(exc, 300)}") from None
    if size > MAX_RESULT_BYTES:
        raise ResultTooLarge(
            f"task {spec.name} returned {size:,} bytes of JSON, over the {MAX_RESULT_BYTES:,}-byte "
            "limit: store large outputs elsewhere (e.g. genqueue's artifact store) and return a URL"
        )
