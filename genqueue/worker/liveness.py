"""Worker liveness, so a worker that died mid-job (SIGKILL, OOM, power loss) is noticed in seconds.

RQ notices an abandoned job only when its started-registry score expires (job_monitoring_interval + 60 s
after the last heartbeat, i.e. up to 90 s) and only during maintenance (every 600 s by default), and then
charges it to the job's retry budget. genqueue workers instead keep a short-lived key alive from a
background thread (`genqueue:alive:<worker>`, TTL GENQUEUE_LIVENESS_TTL, refreshed 4× per TTL) and list
themselves in `genqueue:workers`. A started job whose worker is one of ours and whose alive key is gone
was abandoned: the sweep (sweep.py) retries it as CRASH. Detection takes at most TTL + sweep interval.

The thread uses its own Redis client, and an at-fork guard keeps RQ's fork of the work horse from
happening while the thread is mid-command or mid-log (a lock held across fork would deadlock the child).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from redis import Redis

WORKERS_KEY = "genqueue:workers"
DEFAULT_LIVENESS_TTL_S = 10.0
DEFAULT_SWEEP_INTERVAL_S = 2.0

_fork_guard = threading.Lock()
_guard_installed = False


def alive_key(worker_name: str) -> str:
    return f"genqueue:alive:{worker_name}"


def _install_fork_guard() -> None:
    global _guard_installed
    if _guard_installed:
        return
    os.register_at_fork(
        before=_fork_guard.acquire,
        after_in_parent=_fork_guard.release,
        after_in_child=_fork_guard.release,
    )
    _guard_installed = True


class Heartbeat(threading.Thread):
    """Keeps this worker's alive key fresh and runs periodic tasks: (interval_s, fn(connection))."""

    def __init__(self, connection: Redis, worker_name: str, *, ttl_s: float,
                 tasks: list[tuple[float, Callable[[Redis], object]]] = ()) -> None:
        super().__init__(name=f"genqueue-heartbeat-{worker_name}", daemon=True)
        # A client of its own: the work horse inherits the worker's pool, never this one.
        pool = connection.connection_pool
        self.connection = Redis(connection_pool=pool.__class__(connection_class=pool.connection_class,
                                                               **pool.connection_kwargs))
        self.worker_name = worker_name
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.tasks = [(self.ttl_ms / 4000, lambda _c: self.beat()), *tasks]
        self._stop_event = threading.Event()
        _install_fork_guard()

    def beat(self) -> None:
        self.connection.set(alive_key(self.worker_name), b"1", px=self.ttl_ms)

    def run(self) -> None:
        due = [0.0] * len(self.tasks)
        tick = min(interval for interval, _ in self.tasks)
        while not self._stop_event.is_set():
            current = time.monotonic()
            for i, (interval, task) in enumerate(self.tasks):
                if current < due[i]:
                    continue
                due[i] = current + interval
                try:
                    with _fork_guard:
                        task(self.connection)
                except Exception:  # noqa: BLE001 - a blip must not stop liveness; the next tick retries
                    pass
            self._stop_event.wait(tick)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        try:
            self.connection.delete(alive_key(self.worker_name))
        finally:
            self.connection.close()
