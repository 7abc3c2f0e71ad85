"""Issue 19's id collisions between tenants, one regression test per finding, through HTTP with real workers
(and the CLI for `dlq recover`). Each refused request must leave the other tenant's state exactly as it was."""

from __future__ import annotations

import json
import uuid

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from tests.api.test_runs_api import run_until_stopped
from tests.dlq_helpers import plain_rq_burst
from tests.helpers import run_cli

ADMIN = {"sub": "ops", "admin": True}


@pytest.fixture
def u():
    """Ids are global in Redis (rq:job:<id>, genqueue:run:<id>): each test's own."""
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}{tag}"


def drain(env) -> None:
    assert run_cli(env, "worker", "--burst", timeout=120).code == 0


def admin_view(client, token, job_id):
    r = client.get(f"/api/jobs/{job_id}", headers=token(**ADMIN))
    return r.status_code, (r.json().get("data") if r.status_code == 200 else None)


def test_enqueue_with_another_tenants_finished_id_is_403_and_changes_nothing(client, token, env, u):
    bob, alice, job = token("bob"), token("alice"), u("bob-1-")
    assert (
        client.post("/api/jobs", headers=bob, json={"payload": {"prompt": "bob's"}, "job_id": job}).status_code == 201
    )
    drain(env)
    before = admin_view(client, token, job)
    assert before[1]["status"] == "finished" and before[1]["tenant"] == "bob"
    r = client.post("/api/jobs", headers=alice, json={"payload": {"prompt": "alice's"}, "job_id": job})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN" and "bob's" not in r.text
    assert admin_view(client, token, job) == before
    assert client.get(f"/api/jobs/{job}", headers=bob).json()["data"]["payload"]["prompt"] == "bob's"
    # the owner may still reuse its own finished id (replaced, as documented)
    assert (
        client.post("/api/jobs", headers=bob, json={"payload": {"prompt": "again"}, "job_id": job}).status_code == 201
    )


def test_enqueue_with_a_dead_lettered_id_never_overwrites_its_entry(client, token, env, store, u):
    bob, alice, job = token("bob"), token("alice"), u("bob-2-")
    payload = {"prompt": "bob's dead", "simulate": ["422"], "params": {"api_key": "sk-bob"}}
    client.post("/api/jobs", headers=bob, json={"payload": payload, "job_id": job})
    drain(env)
    entry = store.get(job)
    r = client.post("/api/jobs", headers=alice, json={"payload": {"prompt": "x", "simulate": ["422"]}, "job_id": job})
    assert r.status_code == 403 and "sk-bob" not in r.text
    # the owner gets a Conflict telling it to replay or delete, not a second job that would overwrite it
    r = client.post("/api/jobs", headers=bob, json={"payload": {"prompt": "again"}, "job_id": job})
    assert r.status_code == 409 and "dead-lettered" in r.json()["error"]["message"]
    drain(env)
    assert store.get(job) == entry
    assert client.get(f"/api/dlq/{job}", headers=token(**ADMIN)).json()["data"]["options"]["tenant"] == "bob"


def test_item_shaped_ids_are_reserved_for_runs(client, token, conn, u):
    job = u("r1") + "-item-0"
    r = client.post("/api/jobs", headers=token("bob"), json={"payload": {"prompt": "p"}, "job_id": job})
    assert r.status_code == 400 and "reserved for run items" in r.json()["error"]["message"]
    assert not conn.exists(f"rq:job:{job}")


def plant(conn, queue_name, job_id, tenant, prompt):
    """A job of `tenant` under an item-shaped id, failed by plain RQ: what the previous version let anyone
    enqueue over HTTP before ids like this were reserved."""
    q = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    q.enqueue(
        "genqueue.jobs.generate",
        {"prompt": prompt, "simulate": ["500"]},
        job_id=job_id,
        meta={"genqueue": {"tenant": tenant}},
    )
    plain_rq_burst(q)


def test_a_run_never_adopts_another_tenants_item_shaped_job(client, token, env, conn, queue_name, u):
    run = u("r7")
    plant(conn, queue_name, f"{run}-item-0", "bob", "bob's")
    before = admin_view(client, token, f"{run}-item-0")
    r = client.post("/api/runs", headers=token("alice"), json={"run_id": run, "items": [{"prompt": "a"}] * 2})
    assert r.status_code == 403 and f"{run}-item-0" in r.json()["error"]["message"]
    assert not conn.exists(f"genqueue:run:{run}") and not conn.exists(f"rq:job:{run}-item-1")  # refused whole
    assert client.get(f"/api/runs/{run}", headers=token("alice")).status_code == 404
    assert admin_view(client, token, f"{run}-item-0") == before


def test_a_run_hides_and_never_retries_a_foreign_item(client, token, env, conn, queue_name, u):
    """Another tenant's job under one of a run's item ids (data from before the checks): the run reads it as
    missing, and Continue neither shows, retries nor charges for it."""
    alice, run = token("alice"), u("r8")
    assert (
        client.post(
            "/api/runs",
            headers=alice,
            json={"run_id": run, "items": [{"prompt": "a"}, {"prompt": "b", "simulate": ["401"]}]},
        ).status_code
        == 201
    )
    run_until_stopped(client, alice, run, env)
    conn.delete(f"genqueue:dlq:{{{queue_name}}}:e:{run}-item-1")  # now bob's job in its place, as old data
    plant(conn, queue_name, f"{run}-item-1", "bob", "bob's secret")
    snap = client.get(f"/api/runs/{run}", headers=alice).json()["data"]
    assert snap["counts"] == {"finished": 1, "missing": 1} and snap["failed_items"] == []
    assert "bob" not in json.dumps(snap)
    before = admin_view(client, token, f"{run}-item-1")
    r = client.post(f"/api/runs/{run}/retry-failed", headers=alice)
    assert r.status_code == 400 and "nothing to retry" in r.json()["error"]["message"]
    assert admin_view(client, token, f"{run}-item-1") == before


def test_retrying_a_run_item_by_id_points_at_continue(client, token, env, conn, u):
    from genqueue.tenants import credits

    tenant, run = u("acme-"), u("r9")
    alice = token("alice", tenant=tenant)
    client.post(
        "/api/runs",
        headers=alice,
        json={"run_id": run, "items": [{"prompt": "p", "simulate": ["500"]}, {"prompt": "q", "simulate": ["401"]}]},
    )
    run_until_stopped(client, alice, run, env)
    credits.set_balance(conn, tenant, 0)
    assert client.post(f"/api/runs/{run}/retry-failed", headers=alice).status_code == 402
    for item in (f"{run}-item-0", f"{run}-item-1"):  # charged, and PERMANENT (class never)
        r = client.post(f"/api/jobs/{item}/retry", headers=alice)
        assert r.status_code == 409 and f"/api/runs/{run}/retry-failed" in r.json()["error"]["message"]
        assert client.get(f"/api/jobs/{item}", headers=alice).json()["data"]["status"] == "dead"
    assert credits.balance(conn, tenant) == 0


def test_manual_retries_over_http_record_the_principal(client, token, env):
    h = token("alice")
    job_id = client.post("/api/jobs", headers=h, json={"payload": {"prompt": "p", "simulate": ["401", "ok"]}}).json()[
        "data"
    ]["id"]
    drain(env)
    assert client.post(f"/api/jobs/{job_id}/retry", headers=h).status_code == 200
    record = client.get(f"/api/jobs/{job_id}", headers=token(**ADMIN)).json()["data"]["history"][-1]
    assert record["action"] == "manual_retry" and record["by"] == "alice (tenant alice)"


def test_newline_run_id_is_400_and_leaves_nothing(client, token, conn, u):
    run = u("nl")
    r = client.post("/api/runs", headers=token(), json={"run_id": run + "\n", "items": [{"prompt": "p"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert conn.keys(f"genqueue:run:{run}*") == [] and conn.keys(f"rq:job:{run}*") == []
    assert client.get(f"/api/runs/{run}%0A", headers=token()).status_code == 400


def test_recover_keeps_the_tenant_and_lists_an_old_entry(client, token, env, conn, queue_name, store, u):
    job = u("rec-")
    q = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    q.enqueue(
        "genqueue.jobs.generate",
        {"prompt": "p", "user_id": "someone", "simulate": ["500"]},
        job_id=job,
        meta={"genqueue": {"tenant": "alice"}},
    )
    plain_rq_burst(q)
    conn.hset(f"rq:job:{job}", "ended_at", "2020-01-01T00:00:00.000000Z")  # failed long ago, recovered today
    assert run_cli(env, "dlq", "recover", "--json").json()["from_failed_registry"] == 1
    assert client.get(f"/api/jobs/{job}", headers=token("alice")).status_code == 200
    assert client.get(f"/api/jobs/{job}", headers=token("someone")).status_code == 403
    listed = run_cli(env, "dlq", "list", "--json").json()["entries"]
    assert [e["job_id"] for e in listed] == [job]
