"""Real provider-limit state, made by real workers, for the limits route, the limit metrics and the Providers
page: a key with a concurrency cap of 1 whose slot a job holds while two more are parked behind it, and a key
paused by a provider's 429 with a 5-minute Retry-After."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass

import pytest

from tests.helpers import wait_for

TASKS = '''
import time

from rq import get_current_job

import genqueue


@genqueue.task(limit_key="hold-TAG")
def hold(n: int) -> int:
    """Holds its key's slot until the test sets hold-TAG:release (a deadline, should the test not)."""
    conn = get_current_job().connection
    conn.rpush("hold-TAG:started", n)
    deadline = time.monotonic() + 120
    while not conn.exists("hold-TAG:release") and time.monotonic() < deadline:
        time.sleep(0.05)
    return n
'''
PAUSE_S = 300


@dataclass
class LimitedKeys:
    held: str  # concurrency 1: one job in flight, two parked
    paused: str  # a 429 with Retry-After: 300 paused it
    release: str  # the Redis key the holding jobs wait for


@pytest.fixture
def limited_keys(tmp_path, env, conn, queue_name, workers) -> LimitedKeys:
    """Requests `workers` so that its teardown (releasing the holders) runs before the workers are stopped."""
    from genqueue.jobs.enqueue import enqueue, enqueue_task
    from genqueue.limits.store import describe, set_limits

    tag = uuid.uuid4().hex[:8]
    module = f"holdtasks_{tag}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    keys = LimitedKeys(held=f"hold-{tag}", paused=f"simulated:pause-{tag}", release=f"hold-{tag}:release")
    set_limits(conn, keys.held, concurrency=1)
    enqueue_task(conn, queue_name, f"{module}.hold", {"n": 0}, check=False)  # ahead of the workers
    enqueue(conn, queue_name, {"prompt": "p", "model": f"pause-{tag}", "simulate": [f"429:retry_after={PAUSE_S}"]})
    for _ in range(2):
        workers(simple=True, extra=("--tasks", module))
    wait_for(lambda: conn.llen(f"hold-{tag}:started") == 1, message="the first job to hold the slot")
    for n in (1, 2):
        enqueue_task(conn, queue_name, f"{module}.hold", {"n": n}, check=False)

    def settled() -> bool:
        held, paused = describe(conn, keys.held)[0], describe(conn, keys.paused)[0]
        return held["parked"] == 2 and paused["state"] == "paused" and paused["counters"].get("rate_limited") == 1

    wait_for(settled, message="two jobs parked behind the holder, and the other key paused by its 429")
    yield keys
    conn.set(keys.release, 1)
