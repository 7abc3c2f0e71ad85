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
from contextvars import ContextVar, Token
from dataclasses import dataclass

# job id → Unix time its limit key should stay paused until, from pause_key; taken (once) by the worker's
# move that ends the attempt, in the same process (a forking worker's work horse runs both).
_pauses: dict[str, float] = {}
_pauses_lock = threading.Lock()


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


def set_current(ctx: TaskContext | None) -> Token[TaskContext | None]:
    return _current.set(ctx)


def reset(token: Token[TaskContext | None]) -> None:
    _current.reset(token)
