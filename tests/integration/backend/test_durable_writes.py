"""GENQUEUE_WAIT_REPLICAS on every write a producer or admin is told succeeded, beyond enqueue: run submit,
DLQ replay, bulk replay, import, manual retry and credits. A primary and one replica on loopback (one pair
for the module); the replica SIGSTOPped makes each acknowledgement fall short: NotDurable in Python, HTTP 503
with retryable: true, exit 5 and one line in the CLI. With the replica back the same calls succeed, and a
retry of a write that fell short does not do it twice."""

from __future__ import annotations

import io
import json

import pytest

from genqueue.backend import durable
from genqueue.backend.connection import connect_url
from genqueue.dlq.bulk import bulk_replay
from genqueue.dlq.replay import replay
from genqueue.dlq.store import DLQStore, Filters
from genqueue.dlq.transfer import import_file
from genqueue.errors import Conflict, NotDurable
from genqueue.jobs.manual_retry import retry_job
from genqueue.runs.rules import item_id
from genqueue.runs.store import submit
from genqueue.settings import Settings
from genqueue.tenants import credits
from tests.dlq_helpers import make_entry
from tests.ha_servers import paused, primary_and_replica
from tests.helpers import run_cli

TIMEOUT_S = 0.3
TTL_S = 3600


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    primary, replica = primary_and_replica(tmp_path_factory.mktemp("pair"))
    yield primary, replica
    replica.kill()
    primary.kill()


@pytest.fixture
def durable_conn(pair):
    primary, _ = pair
    conn = durable.attach(connect_url(f"redis://127.0.0.1:{primary.port}/0"), durable.ALL, TIMEOUT_S)
    yield conn
    conn.close()


def on_replica(replica, key: str) -> bool:
    return bool(replica.client().exists(key))


def dead(store: DLQStore, queue: str, *ids: str, user: str = "u1") -> None:
    for job_id in ids:
        store.add(make_entry(job_id, queue=queue, user=user))


def test_every_admin_write_waits_for_the_replicas(pair, durable_conn, queue_name):
    primary, replica = pair
    store = DLQStore(durable_conn, queue_name, retention_s=TTL_S)
    run_id = f"{queue_name}-run"
    payloads = [{"prompt": "a"}, {"prompt": "b"}]
    dead(store, queue_name, "r1", "m1")
    dead(store, queue_name, "b1", "b2", user="bulk")
    line = json.dumps(make_entry("i1", queue=queue_name))
    with paused(replica):
        with pytest.raises(NotDurable) as info:
            submit(durable_conn, queue_name, payloads, ttl_s=TTL_S, run_id=run_id)
        assert info.value.retryable and info.value.exit_code == 5 and f"run {run_id}" in str(info.value)
        with pytest.raises(NotDurable):
            replay(store, "r1")
        with pytest.raises(NotDurable):
            bulk_replay(store, Filters(user="bulk"))
        with pytest.raises(NotDurable):
            retry_job(durable_conn, store, "m1")
        with pytest.raises(NotDurable):
            import_file(store, io.StringIO(line))
        with pytest.raises(NotDurable):
            credits.set_balance(durable_conn, f"{queue_name}-t", 10)
        with pytest.raises(NotDurable) as added:
            credits.add(durable_conn, f"{queue_name}-t", 5)
        assert "credits show" in str(added.value), "adding again is not idempotent: the error says so"
    # The replica is back: the retries succeed, and nothing is done twice.
    again = submit(durable_conn, queue_name, payloads, ttl_s=TTL_S, run_id=run_id)
    assert not again.created and again.enqueued == 0
    assert all(on_replica(replica, f"rq:job:{item_id(run_id, i)}") for i in range(len(payloads)))
    with pytest.raises(Conflict, match="already replayed"):
        replay(store, "r1")  # the first replay happened: not twice
    with pytest.raises(Conflict, match="queued"):
        retry_job(durable_conn, store, "m1")
    assert bulk_replay(store, Filters(user="bulk")).done == 0  # what the first bulk replay took stays taken
    assert import_file(store, io.StringIO(line), overwrite=True).imported == 1
    assert credits.set_balance(durable_conn, f"{queue_name}-t", 10) == 10
    for job_id in ("r1", "m1", "b1", "b2"):
        assert on_replica(replica, f"rq:job:{job_id}")
    assert on_replica(replica, store.keys.entry("i1"))
    assert credits.balance(replica.client(), f"{queue_name}-t") == 10


def test_a_continue_waits_for_the_replicas_and_is_not_done_twice(pair, durable_conn, env, queue_name):
    from genqueue.runs.rules import RetryLimitReached, run_key
    from genqueue.runs.store import retry_failed
    from tests.helpers import WorkerProcess, wait_for

    primary, replica = pair
    run_id = f"{queue_name}-cont"
    submit(
        durable_conn,
        queue_name,
        [{"prompt": "p", "simulate": ["503", "ok"]}],
        ttl_s=TTL_S,
        run_id=run_id,
        max_retries=0,
    )
    store = DLQStore(durable_conn, queue_name, retention_s=TTL_S)
    worker = WorkerProcess(dict(env, REDIS_URL=f"redis://127.0.0.1:{primary.port}/0"), queue_name)
    try:
        wait_for(lambda: store.count() == 1, timeout=60, message="the item to be dead-lettered")
    finally:
        worker.stop()
    with paused(replica), pytest.raises(NotDurable):
        retry_failed(durable_conn, run_id, ttl_s=TTL_S)
    assert on_replica(replica, f"rq:job:{item_id(run_id, 0)}")  # back, and the Continue with it
    with pytest.raises((Conflict, RetryLimitReached)):
        retry_failed(durable_conn, run_id, ttl_s=TTL_S)  # the item is queued again: not retried twice
    assert durable_conn.hget(run_key(run_id), "retries") == b"1"


def test_an_enqueue_sent_again_after_not_durable_does_not_run_a_finished_job_again(pair, durable_conn, queue_name):
    from genqueue.jobs.enqueue import enqueue

    _, replica = pair
    job_id = f"{queue_name}-resent"
    with paused(replica), pytest.raises(NotDurable):
        enqueue(durable_conn, queue_name, {"prompt": "p"}, job_id=job_id)
    durable_conn.hset(f"rq:job:{job_id}", "status", "finished")  # a worker ran it before the repeat
    again = enqueue(durable_conn, queue_name, {"prompt": "p"}, job_id=job_id, resend=True)
    assert not again.created and durable_conn.hget(f"rq:job:{job_id}", "status") == b"finished"
    reused = enqueue(durable_conn, queue_name, {"prompt": "p"}, job_id=job_id)  # not a resend: the id is reused
    assert reused.created


def test_http_says_503_retryable_and_succeeds_with_the_replica_up(pair, durable_conn, queue_name, tmp_path):
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.auth import mint
    from genqueue.api.config import ApiConfig

    primary, replica = pair
    secret = "test-secret-of-at-least-thirty-two-characters"
    config = ApiConfig("HS256", secret, secret, True, rate_limit="1000/minute")
    settings = Settings(redis_url=f"redis://127.0.0.1:{primary.port}/0", home=tmp_path, queue=queue_name)
    admin = {"Authorization": f"Bearer {mint(config, sub='ops', admin=True, ttl_s=600)}"}
    store = DLQStore(durable_conn, queue_name, retention_s=TTL_S)
    dead(store, queue_name, "h1", "h2")
    with TestClient(create_app(settings, config, durable_conn), raise_server_exceptions=False) as client:
        with paused(replica):
            for r in (
                client.post("/api/runs", headers=admin, json={"items": [{"prompt": "a"}], "run_id": "hr"}),
                client.post("/api/dlq/h1/retry", headers=admin),
            ):
                assert r.status_code == 503, r.text
                error = r.json()["error"]
                assert error["code"] == "NOT_DURABLE" and error["retryable"] is True
        r = client.post("/api/runs", headers=admin, json={"items": [{"prompt": "a"}], "run_id": "hr"})
        assert r.status_code in (200, 201), r.text
        assert client.post("/api/dlq/h2/retry", headers=admin).status_code == 200
        assert client.post("/api/dlq/h1/retry", headers=admin).status_code == 409  # replayed once, not twice
        with paused(replica):
            r = client.post("/api/jobs", headers=admin, json={"payload": {"prompt": "p"}, "job_id": "hj"})
            assert r.status_code == 503 and r.json()["error"]["retryable"] is True
        durable_conn.hset("rq:job:hj", "status", "finished")  # a worker ran it before the repeat
        body = {"payload": {"prompt": "p"}, "job_id": "hj", "resend": True}
        r = client.post("/api/jobs", headers=admin, json=body)
        assert r.status_code == 200 and r.json()["data"]["status"] == "finished", r.text
    assert on_replica(replica, f"rq:job:{item_id('hr', 0)}") and on_replica(replica, "rq:job:h2")


def test_the_cli_says_not_durable_in_one_line_exit_5(pair, durable_conn, env, queue_name, tmp_path):
    primary, replica = pair
    e = dict(env, REDIS_URL=f"redis://127.0.0.1:{primary.port}/0", GENQUEUE_WAIT_REPLICAS="all")
    e["GENQUEUE_WAIT_TIMEOUT"] = str(TIMEOUT_S)
    dead(DLQStore(durable_conn, queue_name, retention_s=TTL_S), queue_name, "c1", "c2")
    path = tmp_path / "items.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    with paused(replica):
        for args in (("runs", "submit", str(path), "--run-id", "cr"), ("dlq", "retry", "c1")):
            result = run_cli(e, *args)
            assert result.code == 5, (args, result)
            [line] = result.stderr.strip().splitlines()
            assert line.startswith("error: ") and "GENQUEUE_WAIT_REPLICAS" in line
    assert run_cli(e, "runs", "submit", str(path), "--run-id", "cr").code == 0
    with paused(replica):
        assert run_cli(e, "enqueue", "--payload", '{"prompt": "p"}', "--job-id", "cj").code == 5
    durable_conn.hset("rq:job:cj", "status", "finished")  # a worker ran it before the repeat
    again = run_cli(e, "enqueue", "--payload", '{"prompt": "p"}', "--job-id", "cj", "--resend", "--json")
    assert again.code == 0 and durable_conn.hget("rq:job:cj", "status") == b"finished"
    assert run_cli(e, "enqueue", "--payload", '{"prompt": "p"}', "--resend").code == 2  # needs --job-id
    assert run_cli(e, "dlq", "retry", "c2").code == 0
