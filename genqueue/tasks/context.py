"""What a running task can know about its job: `genqueue.current()` inside a task.

Use the job id as an idempotency key towards a provider, so a retry after a timeout is not billed twice;
`attempt` counts every attempt across retries and replays; `deadline` is when the worker will stop the
attempt (the job timeout), as a Unix time. `pause_key(seconds)` tells the worker that the provider's limit
is spent (its headers said so): the move that ends this attempt pauses the job's limit key until then, so
the key's next jobs park instead of calling into a 429. `usage(input_tokens=..., output_tokens=..., images=...,
usd=...)` reports what the attempt spent: the move that ends it settles the key's unit limits with it and records
it in the usage buckets (without a report, the task's estimate is what counts)."""

from __future__ import annotations

import json
import math
import threading
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..backend import events, keys
from ..backend.scripts import registered

# job id → Unix time its limit key should stay paused until, from pause_key; taken (once) by the worker's
# move that ends the attempt, in the same process (a forking worker's work horse runs both).
_pauses: dict[str, float] = {}
_pauses_lock = threading.Lock()
# job id → what its attempt reported through usage() (unit → amount), taken by the move that ends the attempt.
_usages: dict[str, dict[str, float]] = {}
USAGE_UNITS = ("input_tokens", "output_tokens", "images", "usd")
MAX_USAGE = 1e12


CANCEL_CHECK_S = 0.25  # `cancelled` asks the server at most this often per job
PROGRESS_EVERY_S = 0.25  # `progress` writes at most 4 times a second per job; the last value is always kept
PROGRESS_DATA_MAX_BYTES = 8 * 1024  # `progress(data=...)` as JSON
PROGRESS_MESSAGE_MAX = 500
PROGRESS_FIELD = "genqueue_progress"  # the job hash field (JSON: fraction, message, data, at)
PROGRESS = events.LUA_XADD + resources.files("genqueue.tasks").joinpath("lua", "progress.lua").read_text()


class Live:
    """What a context learns and keeps while its task runs (`cancelled`, the progress not yet written), and
    the server it talks to."""

    __slots__ = ("checked_at", "connection", "is_cancelled", "lock", "pending", "written_at")

    def __init__(self, connection: Any = None) -> None:
        self.connection = connection
        self.checked_at = -math.inf
        self.is_cancelled = False
        self.written_at = -math.inf
        self.pending: str | None = None  # a progress throttled away, written by the next call or at the end
        self.lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class TaskContext:
    job_id: str
    task: str
    queue: str
    attempt: int
    replays: int
    tenant: str | None
    deadline: float | None
    incarnation: str = ""  # when this job was created (RQ's created_at): a reused job id is another one
    live: Live = field(default_factory=Live, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once the job was canceled (`genqueue jobs cancel`, `POST /api/jobs/{id}/cancel`): stop soon —
        return or raise — and the job ends `canceled` whatever the task does. Past GENQUEUE_CANCEL_GRACE the
        worker stops the task itself (a forking worker kills it; `--simple` cannot). Cheap to call in a loop:
        the server is asked at most every CANCEL_CHECK_S."""
        live = self.live
        if live.is_cancelled or live.connection is None:
            return live.is_cancelled
        now = time.monotonic()
        if now - live.checked_at >= CANCEL_CHECK_S:
            live.checked_at = now
            live.is_cancelled = bool(live.connection.exists(keys.cancel_request(self.job_id)))
        return live.is_cancelled

    def progress(self, fraction: float | None = None, message: str | None = None, data: Any = None) -> None:
        """Report how far the task is: `fraction` from 0 to 1, a short `message` ("step 24/60"), `data` any JSON
        (at most 8 KB; a preview's URL, say; secret-looking keys are masked where shown). Kept with the job and
        shown by `genqueue jobs show` and `GET /api/jobs/{id}` (`progress`). Call it as often as you like: at
        most 4 writes a second reach the server, and the last value is always kept."""
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not math.isfinite(fraction)
            or not 0 <= fraction <= 1
        ):
            raise ValueError(f"progress fraction must be a number from 0 to 1, not {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError(f"progress message must be a string, not {type(message).__name__}")
        try:
            encoded = json.dumps(
                {
                    "fraction": fraction,
                    "message": None if message is None else message[:PROGRESS_MESSAGE_MAX],
                    "data": data,
                    "at": time.time(),
                },
                separators=(",", ":"),
                allow_nan=False,
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"progress data must be JSON: {exc}") from None
        if len(encoded) > PROGRESS_DATA_MAX_BYTES + PROGRESS_MESSAGE_MAX + 200:
            raise ValueError(f"progress data is larger than {PROGRESS_DATA_MAX_BYTES} bytes as JSON")
        live = self.live
        with live.lock:
            live.pending = encoded
            if time.monotonic() - live.written_at < PROGRESS_EVERY_S:
                return  # kept: the next call past the interval, or the end of the task, writes it
        self.flush_progress()

    def flush_progress(self) -> None:
        """Write the progress kept back by the throttle, if any (the worker calls it when the task returns)."""
        live = self.live
        with live.lock:
            encoded, live.pending = live.pending, None
            if encoded is None or live.connection is None:
                return
            live.written_at = time.monotonic()
        registered(live.connection, PROGRESS)(args=[keys.rq_job(self.job_id), encoded, self.job_id])

    def pause_key(self, seconds: float) -> None:
        """Pause this job's limit key for `seconds` from now when this attempt ends (a pause only grows: the
        latest end wins). For a provider's "limit spent, resets in N s" on a successful answer; a 429 needs
        no call (its Retry-After already pauses the key). A job without a limit key is not paused."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"pause_key takes seconds >= 0, not {seconds!r}")
        until = time.time() + seconds
        with _pauses_lock:
            _pauses[self.job_id] = max(until, _pauses.get(self.job_id, 0.0))

    def usage(
        self,
        *,
        input_tokens: float | None = None,
        output_tokens: float | None = None,
        images: float | None = None,
        usd: float | None = None,
    ) -> None:
        """Report what this attempt spent at the provider; calls add up within the attempt. The move that ends
        the attempt replaces the estimate reserved in the job's unit limits by this (tokens = input + output)
        and records it per tenant, task and limit key (`genqueue usage`)."""
        given = {"input_tokens": input_tokens, "output_tokens": output_tokens, "images": images, "usd": usd}
        for unit, value in given.items():
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 <= value <= MAX_USAGE
            ):
                raise ValueError(f"usage {unit} must be a number from 0 to {MAX_USAGE:g}, not {value!r}")
        with _pauses_lock:
            spent = _usages.setdefault(self.job_id, {})
            for unit, value in given.items():
                if value is not None:
                    spent[unit] = spent.get(unit, 0.0) + float(value)


def take_usage(job_id: str) -> dict[str, float] | None:
    """What the job's attempt reported through usage() (input_tokens, output_tokens, images, usd), None when
    it reported nothing; forgotten once taken."""
    with _pauses_lock:
        return _usages.pop(job_id, None)


def take_pause(job_id: str, *, now: float | None = None) -> float:
    """Seconds the job's key is still to be paused for (its tasks' pause_key calls, the latest end), 0 when
    none; forgotten once taken."""
    with _pauses_lock:
        until = _pauses.pop(job_id, None)
    if until is None:
        return 0.0
    return max(0.0, until - (time.time() if now is None else now))


_current: ContextVar[TaskContext | None] = ContextVar("genqueue_task", default=None)


def current() -> TaskContext | None:
    """The context of the task running in this thread or asyncio task; None outside a task."""
    return _current.get()


def set_current(ctx: TaskContext | None) -> Token[TaskContext | None]:
    return _current.set(ctx)


def reset(token: Token[TaskContext | None]) -> None:
    _current.reset(token)
