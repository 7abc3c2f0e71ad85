"""`genqueue jobs retry`: refusals, max attempts and --force, dead and RQ-failed jobs, exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

from genqueue.errors import Conflict
from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.manual_retry import retry_job
from genqueue.tenants.fair import waiting_ids
from tests.dlq_helpers import make_entry
from tests.helpers import race, run_cli, wait_for


def status_of(conn, job_id) -> bytes | None:
    return conn.hget(f"rq:job:{job_id}", "status")


def meta_of(conn, job_id) -> dict:
    return json.loads(conn.hget(f"rq:job:{job_id}", "meta"))["genqueue"]


def queued_ids(conn, settings) -> list[str]:
    return waiting_ids(conn, settings.queue)  # RQ's list and the fair lanes


def test_unknown_and_invalid_ids(env):
    r = run_cli(env, "jobs", "retry", "no-such-job")
    assert r.code == 3 and r.stderr.startswith("error: no job no-such-job") and r.stderr.count("\n") == 1
    assert run_cli(env, "jobs", "retry", "no-such-job", "--json").json()["error"]["code"] == "NOT_FOUND"
    bad = run_cli(env, "jobs", "retry", "has:colon", "--json")
    assert bad.code == 2 and bad.json()["error"]["code"] == "INVALID_ID"
    # RQ refuses ':' in job ids with a bare ValueError; enqueue now says so in one line instead of a traceback
    enq = run_cli(env, "enqueue", "--payload", '{"prompt": "x"}', "--job-id", "has:colon")
    assert enq.code == 2 and "Traceback" not in enq.stderr and enq.stderr.count("\n") == 1


def test_queued_scheduled_running_and_finished_jobs_conflict(conn, settings, workers, env):
    queued, later = f"q-{settings.queue}", f"later-{settings.queue}"
    enqueue(conn, settings.queue, {"prompt": "p"}, job_id=queued)
    enqueue(conn, settings.queue, {"prompt": "p"}, job_id=later, in_=timedelta(hours=1))
    for job_id, shown in ((queued, "queued"), (later, "scheduled")):
        r = run_cli(env, "jobs", "retry", job_id)
        assert r.code == 4 and f"is {shown}" in r.stderr, r.stderr
    assert queued_ids(conn, settings) == [queued] and status_of(conn, later) == b"scheduled"

    w = workers()
    wait_for(lambda: status_of(conn, queued) == b"finished", message="queued job to finish")
    done = run_cli(env, "jobs", "retry", queued, "--json")
    assert done.code == 4 and done.json()["error"]["code"] == "CONFLICT"
    assert "finished" in done.json()["error"]["message"]
    assert status_of(conn, queued) == b"finished" and queued_ids(conn, settings) == []

    busy = f"busy-{settings.queue}"
    enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["sleep=60"]}, job_id=busy)
    wait_for(lambda: status_of(conn, busy) == b"started", message="slow job to start")
    r = run_cli(env, "jobs", "retry", busy)
    assert r.code == 4 and "is running" in r.stderr
    assert status_of(conn, busy) == b"started" and queued_ids(conn, settings) == []
    w.kill()


def test_dead_job_is_queued_again_with_its_entry_removed_and_the_retry_recorded(conn, settings, store, workers, env):
    job_id = f"dead-{settings.queue}"
    w = workers()
    enqueue(
        conn,
        settings.queue,
        {"prompt": "p", "simulate": ["422", "ok"], "params": {"api_key": "sk-live-1"}},
        job_id=job_id,
    )
    wait_for(lambda: store.exists(job_id), message="DLQ entry")
    w.stop()
    r = run_cli(env, "jobs", "retry", job_id, "--json")
    assert r.code == 0, r.stderr
    assert {k: r.json()[k] for k in ("status", "previous_status", "attempts", "max_attempts", "charged", "forced")} == {
        "status": "queued",
        "previous_status": "dead",
        "attempts": 1,
        "max_attempts": 6,
        "charged": True,
        "forced": False,
    }
    assert not store.exists(job_id) and store.stats_counters().get("replayed") == 1
    assert queued_ids(conn, settings) == [job_id]
    info = run_cli(env, "jobs", "show", job_id, "--json").json()
    assert info["status"] == "queued" and info["last_error"] is None
    assert info["started_at"] is None and info["completed_at"] is None
    assert info["history"][-1]["action"] == "manual_retry" and info["history"][-1]["previous"]["kind"] == "PERMANENT"
    assert info["payload"]["params"]["api_key"] == "***"
    assert "manual_retry" in run_cli(env, "jobs", "show", job_id).stdout
    meta = meta_of(conn, job_id)
    assert meta["retries"] == 0 and meta["budget_from"] == len(meta["history"]) == 2

    again = run_cli(env, "jobs", "retry", job_id)
    assert again.code == 4 and queued_ids(conn, settings) == [job_id]
    workers()
    wait_for(lambda: status_of(conn, job_id) == b"finished", message="retried job to finish")


def test_max_attempts_reached_unless_force(conn, settings, store, workers, env):
    job_id = f"capped-{settings.queue}"
    workers()
    enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["500"]}, job_id=job_id, max_retries=0)
    wait_for(lambda: store.exists(job_id), message="DLQ entry")
    r = run_cli(env, "jobs", "retry", job_id)
    assert r.code == 4 and "max attempts reached" in r.stderr and "1 of 1" in r.stderr
    assert run_cli(env, "jobs", "retry", job_id, "--json").json()["error"]["code"] == "MAX_ATTEMPTS_REACHED"
    assert store.exists(job_id)

    forced = run_cli(env, "jobs", "retry", job_id, "--force", "--json")
    assert forced.code == 0 and forced.json()["forced"] is True
    wait_for(lambda: store.exists(job_id) and len(store.get(job_id)["history"]) == 3, message="dead again")
    history = store.get(job_id)["history"]
    assert [h["action"] for h in history] == ["dead", "manual_retry", "dead"]
    assert history[1]["forced"] is True and history[1]["charged"] is True
    assert run_cli(env, "jobs", "retry", job_id).code == 4  # still over: every later retry needs --force


def test_a_job_rq_itself_failed_is_requeued_with_its_error_and_timestamps_cleared(conn, settings, workers, env):
    job_id = f"rqfail-{settings.queue}"
    enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["ok"]}, job_id=job_id)
    key = f"rq:job:{job_id}"
    conn.lrem(f"rq:queue:{settings.queue}", 0, job_id)  # what RQ's own failure path leaves behind
    conn.hset(
        key,
        mapping={
            "status": "failed",
            "started_at": "2025-01-01T00:00:00.000000Z",
            "ended_at": "2025-01-01T00:00:01.000000Z",
            "exc_info": "boom",
        },
    )
    conn.zadd(f"rq:failed:{settings.queue}", {job_id: 9999999999})
    assert run_cli(env, "jobs", "show", job_id, "--json").json()["status"] == "failed"

    r = run_cli(env, "jobs", "retry", job_id, "--json")
    assert r.code == 0 and r.json()["previous_status"] == "failed", r.stderr
    assert status_of(conn, job_id) == b"queued" and queued_ids(conn, settings) == [job_id]
    assert conn.hget(key, "started_at") == b"" and conn.hget(key, "ended_at") == b""
    assert not conn.hexists(key, "exc_info") and conn.zscore(f"rq:failed:{settings.queue}", job_id) is None
    assert meta_of(conn, job_id)["history"][-1]["previous"]["status"] == "failed"
    workers()
    wait_for(lambda: status_of(conn, job_id) == b"finished", message="requeued job to finish")


def test_two_admins_retrying_one_dead_job_enqueue_it_once_100_times(conn, settings, store):
    for trial in range(100):
        job_id = f"race-{settings.queue}-{trial}"
        store.add(make_entry(job_id, queue=settings.queue))
        outcomes = race(*[lambda job_id=job_id: retry_job(conn, store, job_id)] * 2, expected=(Conflict,))
        assert outcomes == ["Conflict", "ok"], (trial, outcomes)
    ids = queued_ids(conn, settings)
    assert len(ids) == 100 and len(set(ids)) == 100 and store.count() == 0
