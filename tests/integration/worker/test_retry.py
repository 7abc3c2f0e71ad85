"""Real worker processes (forking and simple) against the real server: every path of the failure machinery."""

from __future__ import annotations

from datetime import datetime

import pytest

from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.status import job_status
from tests.helpers import wait_for

WORKER_KINDS = [pytest.param(False, id="forking"), pytest.param(True, id="simple")]


def submit(conn, settings, simulate, **kw):
    return enqueue(conn, settings.queue, {"prompt": "a fox", "user_id": "u1", "simulate": simulate}, **kw).job.id


def status_of(conn, store, job_id):
    return job_status(conn, store, job_id)


def wait_status(conn, store, job_id, want, timeout=30):
    def check():
        info = status_of(conn, store, job_id)
        return info if info["status"] == want else None

    return wait_for(check, timeout, message=f"job {job_id} to be {want}")


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("simple", WORKER_KINDS)
def test_success(conn, settings, store, workers, simple):
    workers(simple=simple)
    job_id = submit(conn, settings, ["ok"])
    info = wait_status(conn, store, job_id, "finished")
    assert info["attempts"] == 1 and info["history"] == []


@pytest.mark.parametrize("simple", WORKER_KINDS)
def test_transient_failure_then_success_on_the_same_job_id(conn, settings, store, workers, simple):
    workers(simple=simple)
    job_id = submit(conn, settings, ["503", "ok"])
    info = wait_status(conn, store, job_id, "finished")
    assert info["id"] == job_id and info["attempts"] == 2
    [h] = info["history"]
    assert (h["n"], h["kind"], h["action"], h["error"]["status_code"], h["charged"]) == (
        1,
        "TRANSIENT",
        "retry",
        503,
        True,
    )
    assert 0 < h["delay"] <= 0.05 * 1.1 + 1e-9  # base 5 s scaled by 0.01, ±10 %
    assert not store.exists(job_id)


@pytest.mark.parametrize("simple", WORKER_KINDS)
def test_permanent_error_goes_straight_to_the_dlq(conn, settings, store, workers, simple):
    workers(simple=simple)
    job_id = submit(conn, settings, ["422"])
    wait_for(lambda: store.exists(job_id), message="DLQ entry")
    entry = store.get(job_id)
    assert entry["reason"] == "non_retryable" and entry["error"]["kind"] == "PERMANENT"
    assert entry["error"]["status_code"] == 422 and len(entry["history"]) == 1
    assert "ProviderError" in entry["history"][0]["error"]["traceback"]
    assert entry["args"][0]["prompt"] == "a fox"
    assert conn.hget(f"rq:job:{job_id}", "status") is None  # the DLQ is its one place now
    assert job_id not in conn.zrange(f"rq:wip:{settings.queue}", 0, -1)


@pytest.mark.parametrize("simple", WORKER_KINDS)
def test_exhaustion_records_every_attempt(conn, settings, store, workers, simple):
    workers(simple=simple)
    job_id = submit(conn, settings, ["500", "reset", "timeout"], max_retries=2)
    wait_for(lambda: store.exists(job_id), message="DLQ entry")
    entry = store.get(job_id)
    assert entry["reason"] == "exhausted" and entry["retry_count"] == 2
    assert [h["kind"] for h in entry["history"]] == ["TRANSIENT", "TRANSIENT", "TIMEOUT"]
    assert [h["action"] for h in entry["history"]] == ["retry", "retry", "dead"]
    assert [h["n"] for h in entry["history"]] == [1, 2, 3]
    assert store.ttl(job_id) > 7 * 24 * 3600 - 60


def test_retry_after_is_honoured(conn, settings, store, workers):
    workers()
    job_id = submit(conn, settings, ["429:retry_after=2", "ok"])
    info = wait_status(conn, store, job_id, "finished")
    [h] = info["history"]
    assert h["kind"] == "RATE_LIMITED" and h["retry_after"] == 2.0 and h["delay"] >= 2.0
    assert ts(info["started_at"]) - ts(h["ended_at"]) >= 2.0


def test_crash_of_the_work_horse_does_not_lose_the_job(conn, settings, store, workers):
    w = workers()
    job_id = submit(conn, settings, ["crash", "ok"], max_retries=0)
    info = wait_status(conn, store, job_id, "finished")
    [h] = info["history"]
    assert (h["kind"], h["action"], h["charged"]) == ("CRASH", "retry", False)
    assert "signal 9" in h["error"]["message"]
    assert w.alive()


def test_crash_loop_is_dead_lettered_after_the_crash_budget(conn, settings, store, workers):
    workers()
    job_id = submit(conn, settings, ["crash"])
    wait_for(lambda: store.exists(job_id), timeout=60, message="DLQ entry")
    entry = store.get(job_id)
    assert entry["reason"] == "crash_loop" and entry["crash_count"] == 4 and entry["retry_count"] == 0
    assert [h["action"] for h in entry["history"]] == ["retry", "retry", "retry", "dead"]


def test_job_timeout_is_a_timeout(conn, settings, store, workers):
    workers()
    job_id = submit(conn, settings, ["sleep=5", "ok"], timeout=1)
    info = wait_status(conn, store, job_id, "finished", timeout=40)
    assert info["history"][0]["kind"] == "TIMEOUT"
    assert info["history"][0]["error"]["type"] == "JobTimeoutException"


def test_per_job_policy_override_end_to_end(conn, settings, store, workers, env):
    from tests.helpers import run_cli

    workers()
    pol = f"pol-{settings.queue}"
    r = run_cli(
        env,
        "enqueue",
        "--payload",
        '{"prompt": "p", "simulate": ["500"]}',
        "--job-id",
        pol,
        "--policy",
        '{"TRANSIENT": {"max": 1}}',
    )
    assert r.code == 0, r.stderr
    wait_for(lambda: store.exists(pol), message="DLQ entry")
    entry = store.get(pol)
    assert entry["reason"] == "exhausted" and len(entry["history"]) == 2
    bad = run_cli(env, "enqueue", "--payload", '{"prompt": "p"}', "--policy", '{"TRANSIENT": {"max": "x"}}')
    assert bad.code == 2 and bad.stderr.count("\n") == 1
