"""A breaker one tenant cannot trip for all, with real workers: tenant A's jobs all fail (a 503-like
connection error: TRANSIENT) while tenant B's succeed, interleaved on one limit key — A's own breaker opens
and parks A's jobs; none of B's is parked, and of A's 100 failing calls interleaved with B's only the few
before A's breaker opened ran (the rest held), so B's jobs were not slowed by A's storm — counted, not timed.
With both tenants failing, the key opens for everyone, as before."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from genqueue.backend import keys
from genqueue.jobs.enqueue import enqueue_task
from tests.helpers import wait_for

TASKS = """
import time

from rq import get_current_job

import genqueue


@genqueue.task(limit_key="fair-TAG", policy={"TRANSIENT": {"max": 0}}, limits={"cooldown": "60s"})
def call(user_id: str, n: int, fail: bool = False, seconds: float = 0.0) -> int:
    conn = get_current_job().connection
    if fail:
        conn.incr("fair-TAG:a-ran")
        raise ConnectionError("503 upstream unavailable")
    time.sleep(seconds)
    conn.rpush("fair-TAG:done", f"{user_id}:{n}:{time.time()}")
    return n
"""
B_JOBS, A_JOBS, B_SECONDS, WORKERS = 20, 100, 2.0, 4
# A's calls that may run before its breaker holds the rest: BREAKER_MIN_CALLS (5) to open it, plus the calls
# already claimed by the 4 workers then, with room for a probe after the cooldown. Unheld, all 100 would run.
A_RAN_AT_MOST = 20


@pytest.fixture
def fair(tmp_path, env):
    tag = uuid.uuid4().hex[:8]
    module = f"fairtasks_{tag}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return module, tag


def finished_at(conn, tag, tenant, round_):
    """Finish times of `tenant`'s jobs of round `round_` (n = round * 1000 + i)."""
    out = []
    for raw in conn.lrange(f"fair-{tag}:done", 0, -1):
        user, n, at = raw.decode().split(":")
        if user == tenant and int(n) // 1000 == round_:
            out.append(float(at))
    return out


def stats(conn, key):
    return {k.decode(): int(v) for k, v in conn.hgetall(keys.limit_prefix(key) + "stats").items()}


def test_one_tenants_failures_do_not_park_anothers_jobs(env, workers, conn, queue_name, fair):
    module, tag = fair
    key, task = f"fair-{tag}", f"{module}.call"
    for _ in range(WORKERS):
        workers(simple=True, extra=("--tasks", module))

    def b_round(round_, with_a):
        for i in range(B_JOBS):
            if with_a:
                for j in range(A_JOBS // B_JOBS):
                    enqueue_task(conn, queue_name, task, {"user_id": "A", "n": i * 10 + j, "fail": True}, check=False)
            enqueue_task(
                conn, queue_name, task, {"user_id": "B", "n": round_ * 1000 + i, "seconds": B_SECONDS}, check=False
            )
        wait_for(lambda: len(finished_at(conn, tag, "B", round_)) == B_JOBS, timeout=240, message=f"B's round {round_}")

    # B alone first: the key's last minute holds B's successes, so A's failures are A's alone (the tenant
    # breaker's case), not the key's (which an empty history would make them).
    b_round(0, with_a=False)
    b_round(1, with_a=True)
    a_ran = int(conn.get(f"fair-{tag}:a-ran") or 0)
    assert 5 <= a_ran <= A_RAN_AT_MOST, a_ran  # A's breaker needed its calls to open, then held the rest
    counted = stats(conn, key)
    assert counted.get("tenant_breaker_opens", 0) >= 1 and counted.get("tenant_held", 0) > 0  # A's own, parked
    assert counted.get("breaker_opens", 0) == 0 and counted.get("held", 0) == 0  # the key never opened
    assert conn.hget(keys.limit_prefix(key) + "tbrk", "A") is not None
    assert conn.hget(keys.limit_prefix(key) + "tbrk", "B") is None
    parked_b = conn.llen(keys.limit_prefix(key) + "parked:B")
    assert parked_b == 0


def test_with_both_tenants_failing_the_key_opens(env, workers, conn, queue_name, fair):
    module, tag = fair
    key, task = f"fair-{tag}", f"{module}.call"
    for i in range(12):
        enqueue_task(conn, queue_name, task, {"user_id": "AB"[i % 2], "n": i, "fail": True}, check=False)
    workers(simple=True, extra=("--tasks", module))
    wait_for(lambda: stats(conn, key).get("breaker_opens", 0) == 1, timeout=60, message="the key to open")
    assert conn.hget(keys.limit_prefix(key) + "brk", "state") == b"open"
    enqueue_task(conn, queue_name, task, {"user_id": "C", "n": 99}, check=False)
    wait_for(lambda: conn.llen(keys.limit_prefix(key) + "parked:C") == 1, message="C's job held by the open key")
