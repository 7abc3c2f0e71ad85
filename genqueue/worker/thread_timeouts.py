"""Timeouts of sync jobs in the concurrent worker's threads (concurrent.py's docstring, "Timeouts").

Pool threads have no SIGALRM (that is the main thread's), so a watchdog thread raises RQ's JobTimeoutException
in a job's thread at its deadline (PyThreadState_SetAsyncExc, as Dramatiq's TimeLimit does), which takes effect
at the thread's next Python bytecode. A thread still running UNINTERRUPTIBLE_AFTER_S later (stuck in C code, or
it swallowed the exception) is *stuck*: its job is failed as TIMEOUT and its slot given to a new thread
(`ConcurrentWorker.replace_stuck`), which also counts it against GENQUEUE_MAX_STUCK_THREADS.

PyThreadState_SetAsyncExc returns how many threads it changed: 0 means the thread is gone (nothing to do), more
than 1 should never happen and is undone at once (called again with NULL) and reported.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rq.timeouts import JobTimeoutException

from ..support.logs import get_logger
from ..support.safe_text import describe
from .concurrent_state import JobState, job_state

if TYPE_CHECKING:
    from .concurrent import ConcurrentWorker

log = get_logger("genqueue.worker")
UNINTERRUPTIBLE_AFTER_S = 5.0  # after its timeout, a thread gets this long to stop before its slot is replaced


def async_raise(thread_id: int, exc_type: type[BaseException] | None) -> int:
    """Raise exc_type in the thread at its next bytecode (None: clear a pending one). Returns the number of
    threads changed: 1, or 0 when the thread has already ended."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    changed = int(
        set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else ctypes.c_void_p(0))
    )
    if changed > 1:  # CPython's documented misuse case: undo it for every thread it touched
        set_async_exc(ctypes.c_ulong(thread_id), ctypes.c_void_p(0))
        log.error("job.async_raise_misfired", thread_id=thread_id, changed=changed)
        return 0
    return changed


class Interrupted(JobTimeoutException):
    """Raised inside a timed-out thread; turned into RQ's JobTimeoutException with its message on the way out."""


@dataclass(eq=False)
class Armed:
    state: JobState
    thread_id: int
    deadline: float
    timeout_s: float
    fired_at: float | None = None
    given_up: bool = False


class ThreadTimeouts(threading.Thread):
    """The watchdog of sync jobs' timeouts."""

    def __init__(self, worker: ConcurrentWorker) -> None:
        super().__init__(name="genqueue-timeouts", daemon=True)
        self.worker = worker
        self._lock = threading.Lock()
        self._armed: dict[int, Armed] = {}
        self._stop_event = threading.Event()

    def penalty(self, timeout: float, exception: Any = JobTimeoutException, **kwargs: Any) -> Penalty:
        """Called by RQ's perform_job as `self.death_penalty_class(timeout, JobTimeoutException, job_id=...)`."""
        return Penalty(self, timeout)

    def arm(self, timeout: float) -> Armed | None:
        if not timeout or timeout <= 0:
            return None
        entry = Armed(job_state.get() or JobState(), threading.get_ident(), time.monotonic() + timeout, timeout)
        with self._lock:
            self._armed[id(entry)] = entry
        return entry

    def disarm(self, entry: Armed | None, exc: BaseException | None) -> None:
        if entry is None:
            return
        with self._lock:
            self._armed.pop(id(entry), None)
            fired = entry.fired_at is not None
            if fired and not isinstance(exc, Interrupted):
                async_raise(entry.thread_id, None)  # fired but not delivered yet: clear it, raise it here
        if fired or isinstance(exc, Interrupted):
            raise JobTimeoutException(f"Task exceeded maximum timeout value ({entry.timeout_s:g} seconds)") from None

    def raise_in(self, state: JobState, exc_type: type[BaseException]) -> bool:
        """Raise exc_type in the thread running `state`'s task, only while its task runs (armed): a cancel past
        its grace (cancel.py). False when the task is not running."""
        with self._lock:
            for entry in self._armed.values():
                if entry.state is state and entry.fired_at is None:
                    return bool(async_raise(entry.thread_id, exc_type))
        return False

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            stuck = []
            current = time.monotonic()
            with self._lock:
                gone = []
                for entry in self._armed.values():
                    if entry.fired_at is None and current >= entry.deadline:
                        entry.fired_at = current
                        if not async_raise(entry.thread_id, Interrupted):
                            gone.append(entry)  # the thread has ended: nothing left to time out
                    elif (
                        entry.fired_at is not None
                        and not entry.given_up
                        and current >= entry.fired_at + UNINTERRUPTIBLE_AFTER_S
                    ):
                        entry.given_up = True
                        async_raise(entry.thread_id, None)
                        stuck.append(entry)
                for entry in stuck + gone:
                    self._armed.pop(id(entry), None)
            for entry in stuck:
                try:
                    self.worker.replace_stuck(entry)
                except Exception as exc:  # noqa: BLE001 - the watchdog must outlive one failed move
                    log.warning("job.timeout_move_failed", error=describe(exc))

    def stop(self) -> None:
        self._stop_event.set()


class Penalty:
    def __init__(self, timeouts: ThreadTimeouts, timeout: float) -> None:
        self.timeouts, self.timeout = timeouts, timeout
        self.entry: Armed | None = None

    def __enter__(self) -> Penalty:
        self.entry = self.timeouts.arm(self.timeout)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.timeouts.disarm(self.entry, exc)
