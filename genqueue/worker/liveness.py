"""Worker liveness, so a worker that died mid-job (SIGKILL, OOM, power loss) is noticed in seconds.

RQ notices an abandoned job only when its started-registry score expires (job_monitoring_interval + 60 s
after the last heartbeat, i.e. up to 90 s) and only during maintenance (every 600 s by default), and then
charges it to the job's retry budget. genqueue workers instead keep a short-lived key alive from a
background thread (`genqueue:alive:<worker>`, TTL GENQUEUE_LIVENESS_TTL, refreshed 4× per TTL) and list
themselves in `genqueue:workers`. A started job whose worker is one of ours and whose alive key is gone
was abandoned: the sweep (sweep.py) retries it as CRASH. Detection takes at most TTL + sweep interval.

The same beat keeps the worker's *current claims* — each running job's (one, or up to N for a
concurrent worker) started-registry member and
execution hash — from expiring: `ZADD XX GT` pushes the member's score to now + CLAIM_HORIZON_S (never
lowering RQ's own, never re-adding a member that a finished or swept job already left) and `EXPIRE GT`
does the same for the execution hash. RQ only refreshes them every job_monitoring_interval from the
forking parent, and never while a SimpleWorker runs a job; a score that passes makes any RQ reader
(`rq info`, rq-dashboard: `BaseRegistry.count` runs `cleanup()`) move the job to FailedJobRegistry as
"abandoned". With this, an expired score means the worker really stopped beating.

Each beat also publishes the claims it refreshed (`genqueue:claims:<worker>`, with a beat number), so the
sweep can tell a live worker's current claims from executions it no longer runs: after a failover's
rollback the server may hold a claim the worker finished on the former primary (sweep.find_abandoned).

The thread uses its own Redis client, and an at-fork guard keeps RQ's fork of the work horse from
happening while the thread is mid-command or mid-log (a lock held across fork would deadlock the child).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from redis import Redis

from ..backend import keys
from ..backend.connection import sibling
from ..backend.outage import OutageTooLong
from ..support.logs import get_logger
from ..support.safe_text import describe

log = get_logger("genqueue.worker")
WORKERS_KEY = keys.WORKERS
DEFAULT_LIVENESS_TTL_S = 10.0
DEFAULT_SWEEP_INTERVAL_S = 2.0
CLAIM_HORIZON_S = 90  # RQ's own heartbeat TTL for a forking worker (job_monitoring_interval 30 s + 60 s)


@dataclass(frozen=True, slots=True)
class Claim:
    """The running job's execution: its started-registry member and its execution hash."""

    started_key: str
    member: str
    execution_key: str


_fork_guard = threading.Lock()
_guard_installed = False


alive_key = keys.alive
dead_seen_key = keys.dead_seen  # when a sweep first found the alive key gone (sweep.prune_dead_workers)


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

    def __init__(
        self,
        connection: Redis,
        worker_name: str,
        *,
        ttl_s: float,
        claim: Callable[[], Claim | Iterable[Claim] | None] = lambda: None,
        tasks: Sequence[tuple[float, Callable[[Redis], object]]] = (),
    ) -> None:
        super().__init__(name=f"genqueue-heartbeat-{worker_name}", daemon=True)
        # A client of its own: the work horse inherits the worker's pool, never this one.
        self.connection = sibling(connection)
        self.worker_name = worker_name
        self.claim = claim
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.tasks = [(self.ttl_ms / 4000, lambda _c: self.beat()), *tasks]
        self._stop_event = threading.Event()
        self._beats = 0
        _install_fork_guard()

    def beat(self) -> None:
        claims = self.claim()
        claims = () if claims is None else (claims,) if isinstance(claims, Claim) else tuple(claims)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.set(alive_key(self.worker_name), b"1", px=self.ttl_ms)
            # Again on every beat: a worker frozen past its TTL may have been pruned from the set meanwhile.
            pipe.sadd(WORKERS_KEY, self.worker_name)
            pipe.delete(dead_seen_key(self.worker_name))
            for claim in claims:  # one per running job: a concurrent worker (concurrent.py) has up to N
                pipe.zadd(claim.started_key, {claim.member: time.time() + CLAIM_HORIZON_S}, xx=True, gt=True)
                pipe.expire(claim.execution_key, CLAIM_HORIZON_S, gt=True)
            # What this worker runs, for the sweep: a failover can roll the server back to a state where this
            # live worker still holds a claim it has long finished (sweep.find_abandoned).
            self._beats += 1
            claims_key = keys.claims(self.worker_name)
            pipe.delete(claims_key)
            pipe.hset(claims_key, mapping={keys.CLAIMS_BEAT: self._beats, **{c.member: 1 for c in claims}})
            pipe.pexpire(claims_key, self.ttl_ms)
            pipe.execute()

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
                except OutageTooLong:
                    pass  # the main thread meets the same outage and ends the worker (exit 5)
                except Exception as exc:  # noqa: BLE001 - a blip must not stop liveness; the next tick retries
                    log.warning(
                        "heartbeat.task_failed",
                        worker=self.worker_name,
                        task=getattr(task, "__name__", "?"),
                        error=describe(exc),
                    )
            self._stop_event.wait(tick)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        try:
            self.connection.delete(alive_key(self.worker_name))
        finally:
            self.connection.close()
