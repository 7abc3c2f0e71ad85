"""/api/runs through HTTP with a real worker: submit (JSON array, object, JSONL), read, and "Continue"
(retry-failed) with every documented status, tenancy and credits."""

from __future__ import annotations

import json
import uuid

from tests.api.test_jobs_api import drain


def submit(client, headers, items, **extra):
    return client.post(
        "/api/runs",
        headers=headers,
        json={"items": items, "run_id": extra.pop("run_id", None) or f"r-{uuid.uuid4().hex[:8]}", **extra},
    )


def test_submit_json_array_object_and_jsonl_and_resubmit(client, token):
    h = token()
    r = client.post("/api/runs", headers=h, json=[{"prompt": "a"}, {"prompt": "b"}])
    assert r.status_code == 201 and r.json()["data"]["items"] == 2
    again = client.post("/api/runs", headers=h, json=[{"prompt": "a"}, {"prompt": "b"}])
    assert again.status_code == 200 and again.json()["data"]["enqueued"] == 0  # nothing runs twice
    lines = "\n".join(json.dumps({"prompt": f"l{i}"}) for i in range(3))
    r = client.post(
        "/api/runs?run_id=jsonl-run-" + uuid.uuid4().hex[:6] + "&max_retry_count=5",
        headers={**h, "content-type": "application/x-ndjson"},
        content=lines,
    )
    assert r.status_code == 201 and r.json()["data"]["items"] == 3 and r.json()["data"]["max_retry_count"] == 5
    bad = client.post(
        "/api/runs", headers={**h, "content-type": "application/x-ndjson"}, content='{"prompt": "ok"}\n{oops'
    )
    assert bad.status_code == 400 and "line 2" in bad.json()["error"]["message"]
    for body in ([], {"items": [{"prompt": "x"}], "max_retry_count": 11}, [{"prompt": ""}]):
        r = client.post("/api/runs", headers=h, json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", body


def run_until_stopped(client, headers, run_id, env) -> dict:
    """Burst workers until the run stops (retries come back between bursts)."""
    from tests.helpers import wait_for

    def stopped():
        drain(env)
        snap = client.get(f"/api/runs/{run_id}", headers=headers).json()["data"]
        return snap["status"] != "running" and snap

    return wait_for(stopped, timeout=90, interval=0.2, message=f"run {run_id} to stop")


def test_continue_statuses_on_a_partly_failed_run(client, token, env):
    h = token("acme-user", tenant="acme")
    items = [
        {"prompt": "ok"},
        {"prompt": "boom", "simulate": ["500", "ok"]},
        {"prompt": "bad", "simulate": ["422"]},
        {"prompt": "crash", "simulate": ["crash", "ok"]},
    ]
    run_id = submit(client, h, items).json()["data"]["run_id"]
    r = client.post(f"/api/runs/{run_id}/retry-failed", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"  # still running
    snap = run_until_stopped(client, h, run_id, env)
    assert snap["status"] == "partially_failed" and snap["counts"]["finished"] == 3
    assert [(f["status"], f["kind"], f["retry"]) for f in snap["failed_items"]] == [("dead", "PERMANENT", "never")]
    assert client.get(f"/api/runs/{run_id}", headers=token("other")).status_code == 403
    assert client.post(f"/api/runs/{run_id}/retry-failed", headers=token("other")).status_code == 403
    assert client.get(f"/api/runs/{run_id}", headers=token("ops", admin=True)).status_code == 200
    assert client.get("/api/runs/no-such-run", headers=h).status_code == 404
    assert client.post("/api/runs/no-such-run/retry-failed", headers=h).status_code == 404
    r = client.post(f"/api/runs/{run_id}/retry-failed", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"  # only PERMANENT is left


def test_continue_charges_credits_all_or_nothing(client, token, env, conn):
    from genqueue.tenants import credits

    tenant = f"t-{uuid.uuid4().hex[:6]}"
    h = token("u", tenant=tenant)
    run_id = submit(
        client, h, [{"prompt": "x", "simulate": ["500"]}, {"prompt": "y", "simulate": ["500"]}, {"prompt": "z"}]
    ).json()["data"]["run_id"]
    snap = run_until_stopped(client, h, run_id, env)
    assert snap["status"] == "partially_failed" and {f["retry"] for f in snap["failed_items"]} == {"charged"}
    credits.set_balance(conn, tenant, 1)
    r = client.post(f"/api/runs/{run_id}/retry-failed", headers=h)
    assert r.status_code == 402 and r.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert credits.balance(conn, tenant) == 1  # all or nothing: nothing debited, nothing retried
    assert client.get(f"/api/runs/{run_id}", headers=h).json()["data"]["status"] == "partially_failed"
    credits.add(conn, tenant, 5)
    r = client.post(f"/api/runs/{run_id}/retry-failed", headers=h)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data["charged"]) == 2 and data["credits_debited"] == 2 and credits.balance(conn, tenant) == 4
    assert client.get(f"/api/runs/{run_id}", headers=h).json()["data"]["status"] == "running"
