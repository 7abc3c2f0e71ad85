"""Build DLQ entries directly, for store-level tests."""

from __future__ import annotations

import time

from rq import SimpleWorker
from rq.queue import Queue
from rq.serializers import JSONSerializer

from genqueue.dlq.entry import build_entry


def make_entry(
    job_id: str,
    *,
    kind: str = "TRANSIENT",
    reason: str = "exhausted",
    user: str | None = "u1",
    message: str = "HTTP 503: upstream 7 failed",
    failed_at: float | None = None,
    replays: int = 0,
    queue: str = "q",
    retention_s: int = 7 * 86400,
    payload: dict | None = None,
    **extra,
) -> dict:
    payload = payload or {"prompt": f"prompt for {job_id}", **({"user_id": user} if user else {})}
    return build_entry(
        job_id=job_id,
        queue=queue,
        func="genqueue.jobs.generate",
        args=[payload],
        kwargs={},
        reason=reason,
        error={"kind": kind, "type": "ProviderError", "message": message, "status_code": 503, "traceback": "tb"},
        history=[{"n": 1, "kind": kind, "action": "dead"}],
        retry_count=1,
        crash_count=0,
        enqueued_at=None,
        failed_at=time.time() if failed_at is None else failed_at,
        retention_s=retention_s,
        replays=replays,
        options={"timeout": 180, "max_retries": None},
        **extra,
    )


class _PlainBurst(SimpleWorker):
    """Plain RQ, as a user's own `rq worker --burst` runs it, minus RQ's command pub/sub: its thread stops on
    redis-py's 60 s poll at teardown (the stall genqueue's workers fixed for themselves), and a burst run
    takes no commands."""

    def subscribe(self) -> None:
        return None


def plain_rq_burst(queue: Queue) -> None:
    """Run plain RQ (no genqueue) over `queue` until it is empty: how jobs fail outside genqueue."""
    _PlainBurst([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)
