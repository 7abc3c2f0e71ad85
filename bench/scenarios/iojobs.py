"""The iobound scenario's job functions: a job that only waits, as one that awaits a provider does.

Kept free of genqueue imports: a forking RQ worker's work horse imports this module for every job, and it
should cost RQ what a user's own light task module would (bench/scenarios/jobs.py registers these as
genqueue tasks; `saq_settings` is the saq worker's settings, `python -m saq bench.scenarios.iojobs.saq_settings`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

WAIT_SYNC = "bench.scenarios.iojobs.wait_sync"
WAIT_ASYNC = "bench.scenarios.iojobs.wait_async"


def wait_sync(payload: dict[str, Any]) -> int:
    time.sleep(float(payload["s"]))
    return 1


async def wait_async(payload: dict[str, Any]) -> int:
    await asyncio.sleep(float(payload["s"]))
    return 1


async def saq_wait(ctx: dict[str, Any], *, s: float) -> int:
    await asyncio.sleep(float(s))
    return 1


def saq_queue(url: str, name: str, concurrency: int = 50):
    """saq's Redis queue, built from RedisQueue because saq's Queue.from_url refuses unix:// (the embedded
    server's socket), which redis-py's from_url takes. The pool is sized for the concurrency: each of saq's
    consumers holds a connection in its blocking pop, and redis-py 8's asyncio pool stops at 100 by default
    (at concurrency 500 saq then loses jobs to MaxConnectionsError after popping them)."""
    from redis import asyncio as aioredis
    from saq.queue.redis import RedisQueue

    return RedisQueue(aioredis.from_url(url, max_connections=2 * concurrency + 20), name=name)


def saq_settings() -> dict[str, Any]:
    """One saq worker on $BENCH_SAQ_QUEUE at $BENCH_SAQ_URL, $BENCH_SAQ_CONCURRENCY jobs at once."""
    concurrency = int(os.environ["BENCH_SAQ_CONCURRENCY"])
    return {
        "queue": saq_queue(os.environ["BENCH_SAQ_URL"], os.environ["BENCH_SAQ_QUEUE"], concurrency),
        "functions": [saq_wait],
        "concurrency": concurrency,
    }
