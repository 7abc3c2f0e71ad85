"""/api/jobs through HTTP with a real worker: enqueue (idempotent), status with every step, manual retry,
tenancy, and each documented error status."""

from __future__ import annotations

from tests.helpers import run_cli, wait_for


def drain(env) -> None:
    """A real worker, in burst mode: runs what is queued (and due retries) and exits."""
    assert run_cli(env, "worker", "--burst", timeout=120).code == 0


def status(client, headers, job_id):
    return client.get(f"/api/jobs/{job_id}", headers=headers).json()["data"]


def test_enqueue_is_idempotent_and_masks_secrets(client, token):
    body = {
        "payload": {"prompt": "a fox", "api_key": "sk-live-123", "params": {"authorization": "Bearer x"}},
        "job_id": "api-idem-1",
    }
    first = client.post("/api/jobs", headers=token(), json=body)
    assert first.status_code == 201
    data = first.json()["data"]
    assert data["id"] == "api-idem-1" and data["status"] == "queued" and data["tenant"] == "alice"
    assert data["payload"]["api_key"] == "***" and data["payload"]["params"]["authorization"] == "***"
    assert "sk-live-123" not in first.text
    again = client.post("/api/jobs", headers=token(), json=body)
    assert again.status_code == 200 and again.json()["data"]["id"] == "api-idem-1"
    for field in (
        "id",
        "type",
        "payload",
        "status",
        "attempts",
        "max_attempts",
        "last_error",
        "scheduled_at",
        "started_at",
        "completed_at",
        "created_at",
        "history",
    ):
        assert field in data, field


def test_another_tenants_job_is_403_and_admins_see_every_tenant(client, token):
    job_id = client.post("/api/jobs", headers=token("alice"), json={"payload": {"prompt": "p"}}).json()["data"]["id"]
    r = client.get(f"/api/jobs/{job_id}", headers=token("bob"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN" and "prompt" not in r.text
    assert client.post(f"/api/jobs/{job_id}/retry", headers=token("bob")).status_code == 403
    # the same id enqueued by another tenant returns neither the job nor its data
    r = client.post("/api/jobs", headers=token("bob"), json={"payload": {"prompt": "q"}, "job_id": job_id})
    assert r.status_code == 403
    assert client.get(f"/api/jobs/{job_id}", headers=token("ops", admin=True)).status_code == 200
    assert client.get(f"/api/jobs/{job_id}", headers=token("carol", tenant="alice")).status_code == 200


def test_malformed_and_unknown_ids(client, token):
    r = client.get("/api/jobs/bad:id", headers=token())
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    r = client.get("/api/jobs/no-such-job", headers=token())
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert client.post("/api/jobs/no-such-job/retry", headers=token()).status_code == 404


def test_a_job_fails_is_dead_lettered_retried_over_http_and_finishes(client, token, env):
    h = token()
    job_id = client.post("/api/jobs", headers=h, json={"payload": {"prompt": "p", "simulate": ["401", "ok"]}}).json()[
        "data"
    ]["id"]
    assert status(client, h, job_id)["status"] == "queued"
    r = client.post(f"/api/jobs/{job_id}/retry", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"  # queued: nothing to retry yet
    drain(env)
    dead = status(client, h, job_id)
    assert dead["status"] == "dead" and dead["attempts"] == 1 and "401" in dead["last_error"]
    assert [e["kind"] for e in dead["history"]] == ["PERMANENT"]
    retried = client.post(f"/api/jobs/{job_id}/retry", headers=h)
    assert retried.status_code == 200 and retried.json()["data"]["status"] == "queued"
    drain(env)
    done = status(client, h, job_id)
    assert done["status"] == "finished" and done["completed_at"]
    assert [e.get("action") for e in done["history"]] == ["dead", "manual_retry"]
    r = client.post(f"/api/jobs/{job_id}/retry", headers=h)
    assert r.status_code == 409  # finished


def test_max_attempts_reached_is_400_and_admins_may_force(client, token, env):
    h = token()
    job_id = client.post(
        "/api/jobs", headers=h, json={"payload": {"prompt": "p", "simulate": ["500"]}, "max_retries": 0}
    ).json()["data"]["id"]
    drain(env)
    assert status(client, h, job_id)["status"] == "dead"
    r = client.post(f"/api/jobs/{job_id}/retry", headers=h)
    assert r.status_code == 400 and "maximum retry attempts" in r.json()["error"]["message"]
    assert client.post(f"/api/jobs/{job_id}/retry?force=true", headers=h).status_code == 403  # not an admin
    assert client.post(f"/api/jobs/{job_id}/retry?force=true", headers=token("ops", admin=True)).status_code == 200


def test_delay_schedules_the_job(client, token):
    r = client.post("/api/jobs", headers=token(), json={"payload": {"prompt": "later"}, "delay_s": 3600})
    data = r.json()["data"]
    assert r.status_code == 201 and data["status"] == "scheduled" and data["scheduled_at"]


def test_audit_records_the_principal(client, token, conn):
    from genqueue.backend import audit

    client.post("/api/jobs", headers=token("auditee"), json={"payload": {"prompt": "p"}, "job_id": "api-audit-1"})
    rows = wait_for(
        lambda: [r for r in audit.recent(conn, 50) if r["action"] == "api_enqueue" and "api-audit-1" in r["ids"]],
        message="the audit row",
    )
    assert rows[0]["who"].startswith("auditee (tenant auditee) from ")


def test_tasks_over_http_only_those_open_to_the_api(client, token, env, conn):
    import genqueue

    @genqueue.task(name="api-open-task", api=True)
    def open_task(prompt: str) -> dict:
        return {"prompt": prompt}

    @genqueue.task(name="api-closed-task")
    def closed_task(prompt: str) -> dict:
        return {"prompt": prompt}

    r = client.post("/api/jobs", headers=token(), json={"task": "api-open-task", "kwargs": {"prompt": "a fox"}})
    assert r.status_code == 201 and r.json()["data"]["type"] == "api-open-task"
    assert r.json()["data"]["payload"] == {"prompt": "a fox"} and r.json()["data"]["tenant"] == "alice"
    r = client.post("/api/jobs", headers=token(), json={"task": "api-open-task", "kwargs": {"promt": "typo"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    r = client.post("/api/jobs", headers=token(), json={"task": "api-closed-task", "kwargs": {"prompt": "x"}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = client.post("/api/jobs", headers=token(), json={"task": "os.system", "kwargs": {}})
    assert r.status_code == 404
    r = client.post("/api/jobs", headers=token(), json={"payload": {"prompt": "p"}, "task": "api-open-task"})
    assert r.status_code == 400
    admin = client.post(
        "/api/jobs", headers=token("ops", admin=True), json={"task": "api-closed-task", "kwargs": {"prompt": "x"}}
    )
    assert admin.status_code == 201
    queued = conn.llen(f"rq:queue:{env['GENQUEUE_QUEUE']}")
    assert queued == 2  # the open task's job and the admin's; nothing from the refused requests
