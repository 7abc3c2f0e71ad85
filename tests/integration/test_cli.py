"""The CLI end to end, in real subprocesses, against the real server and real workers."""

from __future__ import annotations

import json

import pytest

from genqueue.jobs.enqueue import enqueue
from genqueue.tenants.fair import waiting
from tests.helpers import run_cli, wait_for


def dead_job(conn, settings, store, workers, job_id=None, simulate=("401",)):
    job_id = job_id or f"dead-{settings.queue}"
    workers()
    enqueue(
        conn,
        settings.queue,
        {
            "prompt": "p",
            "user_id": "u9",
            "simulate": list(simulate),
            "params": {"api_key": "sk-live-123", "max_tokens": 10},
        },
        job_id=job_id,
    )
    wait_for(lambda: store.exists(job_id), message="DLQ entry")
    return job_id


def test_dlq_list_and_show(conn, settings, store, workers, env):
    job_id = dead_job(conn, settings, store, workers)
    r = run_cli(env, "dlq", "list", "--json")
    assert r.code == 0, r.stderr
    body = r.json()
    assert set(body) == {"queue", "total", "entries", "next_cursor"}
    assert body["total"] == 1 and body["entries"][0]["job_id"] == job_id
    assert body["entries"][0]["args"][0]["params"] == {"api_key": "***", "max_tokens": 10}
    table = run_cli(env, "dlq", "list")
    assert job_id in table.stdout and "PERMANENT" in table.stdout and "sk-live" not in table.stdout
    show = run_cli(env, "dlq", "show", job_id)
    assert show.code == 0 and "Traceback" in show.stdout and "sk-live" not in show.stdout
    shown = run_cli(env, "dlq", "show", job_id, "--json").json()
    assert shown["reason"] == "non_retryable" and shown["history"][0]["error"]["status_code"] == 401
    assert run_cli(env, "dlq", "list", "--kind", "TRANSIENT", "--json").json()["entries"] == []


def test_dlq_retry_then_success_and_entry_gone(conn, settings, store, workers, env):
    job_id = dead_job(conn, settings, store, workers, simulate=("401", "ok"))
    r = run_cli(env, "dlq", "retry", job_id, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["results"][0]["replayed"] is True
    assert not store.exists(job_id)
    wait_for(
        lambda: run_cli(env, "jobs", "show", job_id, "--json").json()["status"] == "finished",
        message="replayed job to finish",
    )
    info = run_cli(env, "jobs", "show", job_id, "--json").json()
    assert info["replays"] == 1 and info["attempts"] == 2  # the fresh budget keeps the history
    again = run_cli(env, "dlq", "retry", job_id)
    assert again.code == 4 and again.stderr.count("\n") == 1 and "not in the DLQ" in again.stderr


def test_dlq_delete(conn, settings, store, workers, env):
    job_id = dead_job(conn, settings, store, workers)
    refused = run_cli(env, "dlq", "delete", job_id)  # no TTY, no --yes
    assert refused.code == 2 and store.exists(job_id)
    r = run_cli(env, "dlq", "delete", job_id, "--yes", "--json")
    assert r.code == 0 and r.json()["results"] == [{"id": job_id, "deleted": True}]
    assert not store.exists(job_id) and store.count() == 0
    assert conn.zcard(store.keys.index("kind", "PERMANENT")) == 0


def test_unknown_ids_exit_3_with_one_line(env):
    for args in (
        ["dlq", "show", "nope"],
        ["dlq", "retry", "nope"],
        ["dlq", "delete", "nope", "--yes"],
        ["jobs", "show", "nope"],
    ):
        r = run_cli(env, *args)
        assert r.code == 3, (args, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    envelope = run_cli(env, "dlq", "show", "nope", "--json").json()
    assert envelope["error"]["code"] == "NOT_FOUND"


def test_bad_input_exits_2_and_changes_nothing(conn, settings, env):
    before = conn.llen(f"rq:queue:{settings.queue}")
    for args in (
        ["enqueue", "--payload", "{bad"],
        ["enqueue", "--payload", "[]"],
        ["enqueue", "--payload", '{"prompt": "x"}', "--in", "soon"],
        ["enqueue", "--payload", '{"prompt": "x"}', "--max-retries", "-1"],
        ["enqueue", "--payload", '{"prompt": "x", "simulate": ["boom"]}'],
        ["dlq", "list", "--bogus"],
        ["enqueue", "--payload", "@/no/such/file"],
    ):
        r = run_cli(env, *args)
        assert r.code == 2, (args, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert conn.llen(f"rq:queue:{settings.queue}") == before == 0


def test_unreachable_server_exits_5_without_the_password(env):
    bad = dict(env, REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    r = run_cli(bad, "dlq", "list")
    assert r.code == 5
    assert r.stderr.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in r.stderr and r.stderr.count("\n") == 1


def test_enqueue_is_idempotent_by_job_id(conn, settings, env):
    same = f"same-{settings.queue}"
    first = run_cli(env, "enqueue", "--payload", '{"prompt": "x"}', "--job-id", same, "--json")
    second = run_cli(env, "enqueue", "--payload", '{"prompt": "x"}', "--job-id", same, "--json")
    assert first.json()["created"] is True and second.json()["created"] is False
    assert second.json()["status"] == "queued"
    assert conn.lrange(f"rq:queue:{settings.queue}", 0, -1) == [same.encode()]
    assert json.loads(conn.hget(f"rq:job:{same}", "meta"))["genqueue"]["retries"] == 0


def test_enqueue_many_batches_jobs_that_workers_retry_like_any_other(conn, settings, store, workers):
    from genqueue.errors import InvalidInput
    from genqueue.jobs.enqueue import enqueue_many

    with pytest.raises(InvalidInput):  # one bad payload: nothing is enqueued
        enqueue_many(conn, settings.queue, [{"prompt": "ok"}, {"model": "no prompt"}])
    assert conn.llen(f"rq:queue:{settings.queue}") == 0
    payloads = [{"prompt": f"p{i}", "simulate": ["503", "ok"] if i % 2 else ["ok"]} for i in range(25)]
    jobs = enqueue_many(conn, settings.queue, payloads, max_retries=2, batch=10)
    assert len({j.id for j in jobs}) == 25 and waiting(conn, [settings.queue])[settings.queue] == 25
    meta = json.loads(conn.hget(f"rq:job:{jobs[0].id}", "meta"))["genqueue"]
    assert meta["max_retries"] == 2 and meta["history"] == []
    workers()
    wait_for(lambda: all(j.get_status(refresh=True) == "finished" for j in jobs), message="all finished")
    retried = [j for j in jobs if json.loads(conn.hget(j.key, "meta"))["genqueue"]["history"]]
    assert len(retried) == 12 and store.count() == 0


def test_enqueue_in_schedules_and_jobs_show_says_so(conn, settings, env):
    later = f"later-{settings.queue}"
    r = run_cli(env, "enqueue", "--payload", '{"prompt": "x"}', "--job-id", later, "--in", "1h")
    assert r.code == 0
    info = run_cli(env, "jobs", "show", later, "--json").json()
    assert info["status"] == "scheduled" and info["scheduled_at"] is not None and info["attempts"] == 0


def test_jobs_show_history_table(conn, settings, store, workers, env):
    job_id = dead_job(conn, settings, store, workers, simulate=("500", "422"))
    r = run_cli(env, "jobs", "show", job_id)
    assert r.code == 0 and "status:       dead" in r.stdout
    assert "TRANSIENT" in r.stdout and "PERMANENT" in r.stdout and "retry" in r.stdout
    info = run_cli(env, "jobs", "show", job_id, "--json").json()
    assert {"id", "status", "attempts", "history"} <= set(info) and info["attempts"] == 2
