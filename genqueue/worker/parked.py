"""Parked jobs past their max_wait: dead-lettered `rate_limit_wait_exceeded`, as a 429 past it is.

A job parks when its limit key is at its cap or rate, paused or open (limits/lua/limits.lua); its deadline
(the first park + its max_wait, 1 h by default) is in LIMITS_DEADLINES while it is parked. A pause never
outlasts a max_wait, but a key held at its cap or by its breakers can keep a job parked for ever; this duty,
run with the wake on every worker's heartbeat (schedule.DueJobMover.wake), moves the job from its parked
list to the DLQ in one WATCH/MULTI whose claim is its deadline entry (transition.move_failed_job): a wake
that took the job first (ZREM of the entry, the job hash changed) makes the move change nothing.
"""

from __future__ import annotations

import functools
import time

from rq.utils import now

from ..backend import keys
from ..backend.queues import fetch_job, make_queue
from ..dlq.store import DLQStore
from ..retry.kinds import ErrorKind, Reason
from ..retry.manager import Decision, Failure, decision_record
from ..retry.meta import attempt_number, gq
from ..support.logs import get_logger
from .limiting import limit_of
from .transition import _ts, dead_letter_entry, move_failed_job

log = get_logger(__name__)
BATCH = 50  # deadlines handled per call, at most


@functools.lru_cache(maxsize=1)
def _retention_s() -> int:
    from ..settings import Settings

    return Settings.from_env().dlq_retention_s


def expire_parked(connection, *, now_ms: int | None = None, worker: str = "limits") -> int:
    """Dead-letter the parked jobs whose max_wait has passed; how many were moved."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    moved = 0
    for member in connection.zrangebyscore(keys.LIMITS_DEADLINES, "-inf", now_ms, start=0, num=BATCH):
        key, tenant, job_id = member.decode().split("\n", 2)
        job = fetch_job(connection, job_id)
        if job is None or job.get_status(refresh=False) != "deferred":
            connection.zrem(keys.LIMITS_DEADLINES, member)  # gone, or woken since: nothing parked to expire
            continue
        moved += _dead_letter(connection, job, key, tenant, member, worker)
    return moved


def _dead_letter(connection, job, key: str, tenant: str, member: bytes, worker: str) -> int:
    limit = limit_of(job)
    waited = limit.max_wait_s if limit is not None else None
    failure = Failure(
        kind=ErrorKind.RATE_LIMITED,
        type="RateLimitWaitExceeded",
        message=f"parked on limit key {key} for longer than its max_wait ({waited:g} s)"
        if waited
        else f"parked on limit key {key} for longer than its max_wait",
    )
    decision = Decision("dead", ErrorKind.RATE_LIMITED, attempt_number(job), reason=Reason.RATE_LIMIT_WAIT_EXCEEDED)
    gq(job)["history"].append(decision_record(decision, failure, started_at=None, ended_at=_ts(now()), worker=worker))
    store = DLQStore(connection, job.origin, retention_s=_retention_s())
    entry = dead_letter_entry(job, job.origin, decision, failure, store)
    parked_list = keys.limit_prefix(key) + "parked:" + tenant

    def off_the_parked_list(pipe) -> None:
        pipe.lrem(parked_list, 0, job.id)
        pipe.hincrby(keys.PARKED, job.origin, -1)

    claim = (keys.LIMITS_DEADLINES, member.decode())
    queue = make_queue(connection, job.origin)
    if not move_failed_job(connection, job, queue, decision, entry, store, None, off_the_parked_list, claim, failure):
        return 0
    log.warning("limit.wait_exceeded", job_id=job.id, key=key, tenant=tenant, max_wait_s=waited)
    return 1
