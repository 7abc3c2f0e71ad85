"""The job class genqueue workers run: registered tasks only (tasks/registry.py).

RQ's `Job.func` imports whatever dotted path the job names (`import_attribute`: `os.system` included, the
open rq/rq#2191), and its callbacks and webhooks are taken from the job hash as well. A genqueue worker
resolves the function name in the task registry instead and raises UnknownTask — dead-lettered with reason
`unknown_task` — for anything else, including a job whose data is not JSON (pickled by a plain RQ client).
Callbacks and webhooks are never run: genqueue jobs are created without them, so any found were planted.
A job hash whose other fields RQ cannot read (a timeout of "abc" or 1e30, a date that is not one: written by an
old or plain-RQ producer, or by hand) is restored without them and refused the same way, as UnreadableJob: RQ's
restore raised inside the worker's pop, outside any job, and stopped every worker that popped it.

The call itself: the arguments are bound against the function's signature (a mismatch is a TypeError:
PERMANENT), the task sees its context (`genqueue.current()`), an `async def` task runs on an event loop,
and the result must be JSON of at most MAX_RESULT_BYTES — store large outputs elsewhere and return a URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import BaseRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

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


# The job-hash fields RQ's Job.restore parses eagerly (dates, numbers, JSON): any of them can raise.
PARSED_FIELDS = (
    "status",
    "created_at",
    "enqueued_at",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "timeout",
    "result_ttl",
    "failure_ttl",
    "ttl",
    "success_callback_timeout",
    "failure_callback_timeout",
    "stopped_callback_timeout",
    "dependency_ids",
    "allow_dependency_failures",
    "enqueue_at_front",
    "number_of_retries",
    "retries_left",
    "retry_intervals",
    "enqueue_at_front_on_retry",
    "repeats_left",
)


class GenJob(Job):
    unreadable: str | None = None  # why the job hash could not be read as it is: the job is refused, not run

    def restore(self, raw_data: Any) -> None:
        """Job.restore; a field it cannot parse is left out (RQ's default instead) and the job is marked
        unreadable, so its failure is the job's (UnreadableJob) and never the pop's."""
        try:
            super().restore(raw_data)
        except NoSuchJobError:  # no data at all: RQ drops the id, as before
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a field holds
            bad = [f for f in PARSED_FIELDS if self._unparsable(raw_data, f)] or list(PARSED_FIELDS)
            super().restore({k: v for k, v in raw_data.items() if _text(k) not in bad})
            self.unreadable = f"job field(s) {', '.join(bad)} cannot be read ({type(exc).__name__}); nothing was run"

    def _unparsable(self, raw_data: Any, name: str) -> bool:
        """Whether RQ's restore fails on this one field (with the job's data beside it, as restore needs)."""
        fields = {_text(k): v for k, v in raw_data.items()}
        if name not in fields:
            return False
        probe = Job("probe", connection=self.connection, serializer=self.serializer)
        try:
            probe.restore({"data": fields.get("data", b""), name: fields[name]})
        except Exception:  # noqa: BLE001 - any failure to parse this field
            return True
        return False

    @property
    def func(self):
        if self.unreadable:
            raise UnreadableJob(self.unreadable)
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

    # RQ builds a new registry object on every read of these (three to four per job), and each one checks its
    # serializer against RQ's runtime Protocol (`resolve_serializer`: ~16 us on Python 3.11). A registry holds
    # only its name, connection, serializer and job class, so one per (kind, queue, connection) serves all.
    started_job_registry = property(lambda self: _registry(StartedJobRegistry, self))
    finished_job_registry = property(lambda self: _registry(FinishedJobRegistry, self))
    failed_job_registry = property(lambda self: _registry(FailedJobRegistry, self))


_REGISTRIES: dict[tuple[Any, ...], BaseRegistry] = {}
REGISTRIES_KEPT = 512  # queues × kinds × connections one process uses; past it the cache starts again


def _registry(kind: type[BaseRegistry], job: Job) -> Any:
    key = (kind, job.origin, id(job.connection), id(job.serializer), type(job))
    registry = _REGISTRIES.get(key)
    if registry is None or registry.connection is not job.connection or registry.serializer is not job.serializer:
        if len(_REGISTRIES) >= REGISTRIES_KEPT:
            _REGISTRIES.clear()
        registry = _REGISTRIES[key] = kind(
            job.origin, connection=job.connection, job_class=type(job), serializer=job.serializer
        )
    return registry


def _text(key: Any) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


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
        incarnation=job.created_at.strftime("%Y%m%dT%H%M%S%fZ") if job.created_at else "",
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
