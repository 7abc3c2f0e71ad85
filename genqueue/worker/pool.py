"""The concurrent worker's threads apart from its jobs' state and timeouts: a small executor of daemon threads
for blocking Redis moves off the event loop, and one glibc malloc arena for all threads."""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue as queue_mod
import sys
import threading
from collections.abc import Callable
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Have every thread allocate from one glibc malloc arena. By default glibc gives each thread that
    allocates its own arena (up to 8 per core), and each keeps the memory it freed: a worker with 50 job threads
    measured 4-6 MiB (PSS) more with them. Python allocates under the GIL, so the threads never contend for
    one arena. Not done when MALLOC_ARENA_MAX is set (the operator's choice) or without glibc's mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


class DaemonExecutor(concurrent.futures.Executor):
    """A few daemon threads for blocking calls (an exiting worker never waits for them, unlike
    ThreadPoolExecutor's threads, which the interpreter joins at exit)."""

    def __init__(self, workers: int, name: str) -> None:
        self._work: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        for i in range(workers):
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None
