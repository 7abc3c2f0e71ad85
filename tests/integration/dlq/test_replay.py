"""Replay: exactly once under concurrency, the replay cap, finished jobs, payload patches."""

from __future__ import annotations

import pytest

from genqueue.backend.connection import connect_url
from genqueue.dlq.replay import replay
from genqueue.dlq.store import DLQStore
from genqueue.errors import Conflict, NotFound
from genqueue.jobs.enqueue import enqueue
from genqueue.tenants.fair import waiting_ids
from tests.dlq_helpers import make_entry
from tests.helpers import race, run_cli, wait_for


def test_two_admins_replaying_one_entry_enqueue_exactly_once_200_times(conn, settings):
    stores = [DLQStore(connect_url(settings.redis_url), settings.queue, retention_s=3600) for _ in range(2)]
    for trial in range(200):
        job_id = f"race-{settings.queue}-{trial}"
        stores[0].add(make_entry(job_id, queue=settings.queue))
        outcomes = race(*(lambda s=s, job_id=job_id: replay(s, job_id) for s in stores), expected=(Conflict, NotFound))
        assert outcomes in (["Conflict", "ok"], ["NotFound", "ok"]), outcomes
    ids = waiting_ids(conn, settings.queue)
    assert len(ids) == 200 and len(set(ids)) == 200
    assert stores[0].count() == 0 and stores[0].stats_counters()["replayed"] == 200


def test_replay_cap_and_force(conn, settings, store):
    capped_id = f"capped-{settings.queue}"
    store.add(make_entry(capped_id, queue=settings.queue, replays=3))
    with pytest.raises(Conflict, match="max attempts reached"):
        replay(store, capped_id)
    assert store.exists(capped_id)
    job = replay(store, capped_id, force=True)
    assert job.meta["genqueue"]["replays"] == 4 and job.meta["genqueue"]["replayed_from"].startswith(f"{capped_id}@")


def test_refuses_a_job_id_that_has_since_finished(conn, settings, store, env):
    done_id = f"done-1-{settings.queue}"
    enqueue(conn, settings.queue, {"prompt": "p"}, job_id=done_id)
    conn.hset(f"rq:job:{done_id}", "status", "finished")
    store.add(make_entry(done_id, queue=settings.queue))
    r = run_cli(env, "dlq", "retry", done_id)
    assert r.code == 4 and "has since finished" in r.stderr
    assert store.exists(done_id)


def test_lineage_is_carried_into_the_next_entry(conn, settings, store, workers):
    lin_id = f"lin-1-{settings.queue}"
    workers()
    enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["422"]}, job_id=lin_id)
    wait_for(lambda: store.exists(lin_id), message="first dead-letter")
    first = store.get(lin_id)
    replay(store, lin_id)
    wait_for(lambda: store.exists(lin_id), message="second dead-letter")
    second = store.get(lin_id)
    assert second["replays"] == 1 and second["replayed_from"] == f"{lin_id}@{first['failed_at']}"
    assert [h["n"] for h in second["history"]] == [1, 2]


def test_payload_patch_shows_a_diff_and_fixes_the_job(conn, settings, store, workers, env):
    fix_id = f"fix-1-{settings.queue}"
    workers()
    enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["422"], "params": {"api_key": "sk-9"}}, job_id=fix_id)
    wait_for(lambda: store.exists(fix_id), message="DLQ entry")
    r = run_cli(env, "dlq", "retry", fix_id, "--payload-patch", '{"simulate": ["ok"]}', "--yes")
    assert r.code == 0, r.stderr
    assert '-    "422"' in r.stdout and '+    "ok"' in r.stdout and "sk-9" not in r.stdout
    wait_for(lambda: conn.hget(f"rq:job:{fix_id}", "status") == b"finished", message="patched job to finish")
    bad = run_cli(env, "dlq", "retry", "nope", "--payload-patch", "[1]")
    assert bad.code == 2
