"""/api/tenants: admins read and set the tenants' weights in the fair pop and see what each has waiting;
tenants and strangers get the standard 403 / 401; a bad weight is the validation envelope."""

from __future__ import annotations

import uuid

from genqueue.backend import keys
from genqueue.backend.queues import fetch_job
from genqueue.jobs.enqueue import enqueue
from genqueue.tenants.weights import set_weight, weight


def test_admins_set_a_weight_and_see_each_tenants_waiting_jobs(client, token, conn, settings):
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    for _ in range(5):
        enqueue(conn, settings.queue, {"prompt": "p"}, tenant=tenant)
    try:
        r = client.put(f"/api/tenants/{tenant}", json={"weight": 3}, headers=token("ops", admin=True))
        assert r.status_code == 200 and r.json()["data"] == {"tenant": tenant, "weight": 3}
        assert weight(conn, tenant) == 3
        listed = client.get("/api/tenants", headers=token("ops", admin=True)).json()
        assert {"tenant": tenant, "weight": 3, "waiting": 3} in listed["data"]  # two were fed to RQ's list
        assert listed["queue"] == settings.queue and listed["waiting"] == 5
    finally:
        set_weight(conn, tenant, 1)
    assert conn.hget(keys.TENANT_WEIGHTS, tenant) is None  # the default weight is no entry


def test_a_bad_weight_is_refused_and_nothing_changes(client, token, conn):
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    for bad in (0, 1001, "x", None):
        r = client.put(f"/api/tenants/{tenant}", json={"weight": bad}, headers=token("ops", admin=True))
        assert r.status_code in (400, 422) and r.json()["error"]["code"] == "VALIDATION_ERROR", r.json()
    assert weight(conn, tenant) == 1


def test_tenants_and_strangers_are_refused(client, token, conn):
    r = client.put("/api/tenants/alice", json={"weight": 50}, headers=token("alice"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
    assert weight(conn, "alice") == 1
    assert client.get("/api/tenants", headers=token("alice")).status_code == 403
    assert client.get("/api/tenants").json()["error"]["code"] == "UNAUTHORIZED"


def test_priority_over_http_is_checked_and_recorded(client, token, conn, settings):
    r = client.post("/api/jobs", json={"payload": {"prompt": "p"}, "priority": "urgent"}, headers=token("alice"))
    assert r.status_code in (400, 422) and r.json()["error"]["code"] == "VALIDATION_ERROR"
    r = client.post("/api/jobs", json={"payload": {"prompt": "p"}, "priority": "low"}, headers=token("alice"))
    assert r.status_code == 201
    job = fetch_job(conn, r.json()["data"]["id"])
    assert job.meta["genqueue"]["priority"] == "low" and job.meta["genqueue"]["tenant"] == "alice"
