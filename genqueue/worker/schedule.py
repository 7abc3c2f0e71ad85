"""Bring due retries back: genqueue's replacement for RQ's scheduler process inside workers.

RQ's worker runs its scheduler as a separate process holding `rq:scheduler-lock:<queue>` for 61 s; when
that worker is SIGKILLed the process lives on as an orphan (or the lock lingers), and other workers only
try to take over during maintenance (every 600 s). Retries would stall for minutes. Here every genqueue
worker's heartbeat thread ticks twice a second: it takes (or keeps) the same lock key with a 5 s TTL — so
plain RQ schedulers on the queue still exclude us and we them — and moves due jobs with one Lua script.
"""

from __future__ import annotations

import time
from importlib import resources

from redis import Redis
from rq.utils import now, utcformat

from ..backend import keys
from ..tenants.fair import FAIR, context_args, now_ms
from .guarded import WAKE
from .parked import expire_parked

LOCK_TTL_MS = 5000
BATCH = 500
SCHEDULE_TICK_S = 0.5
WAKE_BATCH = 100  # parked jobs woken per limit key per tick, at most
WAKE_TICK_S = SCHEDULE_TICK_S  # with every pop waking due keys too (guarded.POP)
EXPIRY_TICK_S = 1.0  # how often a worker looks for parked jobs past their max_wait
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class DueJobMover:
    def __init__(self, connection: Redis, queue_names: list[str], holder: str) -> None:
        self.connection = connection
        self.queue_names = queue_names
        self.holder = holder
        self._next_expiry = 0.0
        self._lock = connection.register_script(_REFRESH)
        self._wake = connection.register_script(WAKE)
        self._move = connection.register_script(
            FAIR + resources.files("genqueue.worker").joinpath("lua", "enqueue_due.lua").read_text()
        )

    def wake(self, _connection: Redis | None = None) -> int:
        woken = self._wake_parked()
        if time.monotonic() >= self._next_expiry:  # parked jobs past their max_wait: to the DLQ (parked.py)
            self._next_expiry = time.monotonic() + EXPIRY_TICK_S
            expire_parked(self.connection)
        return woken

    def _wake_parked(self) -> int:
        """Parked jobs whose limit key may have room again (a rate window moved on, a pause ended, a dead
        holder's lease expired): back to the head of their queues, as far as the limits allow. Every worker
        runs it (it is one atomic script; the due keys are few), WAKE_TICK_S apart: a rate's token is not
        left unused for longer than that."""
        return self._wake(
            args=[
                keys.LIMITS_WAKE,
                int(time.time() * 1000),
                WAKE_BATCH,
                keys.RQ_JOB_PREFIX,
                keys.RQ_QUEUE_PREFIX,
                keys.LIMIT_PREFIX_HEAD,
                keys.LIMIT_PREFIX_TAIL,
            ]
        )

    def tick(self, _connection: Redis | None = None) -> int:
        moved = 0
        for name in self.queue_names:
            if not self._lock(keys=[keys.rq_scheduler_lock(name)], args=[self.holder, LOCK_TTL_MS]):
                continue  # another scheduler (ours or RQ's) owns this queue
            while True:
                n = self._move(
                    keys=[keys.rq_scheduled(name), keys.rq_queue(name), keys.RQ_QUEUES],
                    args=[
                        int(time.time()),
                        BATCH,
                        keys.RQ_JOB_PREFIX,
                        utcformat(now()),
                        *context_args(name),
                        now_ms(),
                    ],
                )
                moved += n
                if n < BATCH:
                    break
        return moved

    def release(self) -> None:
        for name in self.queue_names:
            key = keys.rq_scheduler_lock(name)
            with self.connection.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    if pipe.get(key) == self.holder.encode():
                        pipe.multi()
                        pipe.delete(key)
                        pipe.execute()
                except Exception:  # noqa: BLE001 - best effort: the lock expires in seconds anyway
                    pass
