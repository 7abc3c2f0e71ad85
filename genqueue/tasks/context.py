"""What a running task can know about its job: `genqueue.current()` inside a task.

Use the job id as an idempotency key towards a provider, so a retry after a timeout is not billed twice;
`attempt` counts every attempt across retries and replays; `deadline` is when the worker will stop the
attempt (the job timeout), as a Unix time. `pause_key(seconds)` tells the worker that the provider's limit
is spent (its headers said so): the move that ends this attempt pauses the job's limit key until then, so
the key's next jobs park instead of calling into a 429."""

from __future__ import annotations

import math
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..backend import keys

# job id → Unix time its limit key should stay paused until, from pause_key; taken (once) by the worker's
# move that ends the attempt, in the same process (a forking worker's work horse runs both).
_pauses: dict[str, float] = {}
_pauses_lock = threading.Lock()


CANCEL_CHECK_S = 0.25  # `cancelled` asks the server at most this often per job


class Live:
    """What a context learns while its task runs (`cancelled`), and the server it asks."""

    __slots__ = ("checked_at", "connection", "is_cancelled")

    def __init__(self, connection: Any = None) -> None:
        self.connection = connection
        self.checked_at = -math.inf
        self.is_cancelled = False


@dataclass(frozen=True, slots=True)
class TaskContext:
    job_id: str
    task: str
    queue: str
    attempt: int
    replays: int
    tenant: str | None
    deadline: float | None
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


def set_current(ctx: TaskContext | None):
    return _current.set(ctx)


def reset(token) -> None:
    _current.reset(token)
