"""Build DLQ entries directly, for store-level tests."""

from __future__ import annotations

import time

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
