"""Bad input refused at the edge (HTTP 400, nothing stored) and readers that never break on what they cannot
read (HTTP 422 with the envelope, never a 500)."""

from __future__ import annotations

import pickle
import uuid

import pytest

import genqueue
from genqueue.backend.queues import fetch_job


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@genqueue.task(name="edges-keyed", api=True, limit_key="prov:{model}")
def keyed(prompt: str, model: str = "m") -> dict:
    return {"prompt": prompt, "model": model}


@genqueue.task(name="edges-open", api=True)
def open_task(data: dict | None = None) -> dict:
    return {}


def queued(conn, env) -> int:
    return conn.llen(f"rq:queue:{env['GENQUEUE_QUEUE']}")


@pytest.mark.parametrize("model", ["gpt 4o", "x" * 250])
def test_a_limit_key_that_cannot_render_is_a_400_and_nothing_is_stored(client, token, conn, env, model):
    r = client.post(
        "/api/jobs", headers=token(), json={"task": "edges-keyed", "kwargs": {"prompt": "hi", "model": model}}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "limit key" in r.json()["error"]["message"]
    assert queued(conn, env) == 0
    ok = client.post(
        "/api/jobs", headers=token(), json={"task": "edges-keyed", "kwargs": {"prompt": "hi", "model": "gpt-4o"}}
    )
    assert ok.status_code == 201 and queued(conn, env) == 1


@pytest.mark.parametrize("levels", [65, 300, 900])
def test_deep_task_kwargs_are_a_400_and_nothing_is_stored(client, token, conn, env, levels):
    r = client.post("/api/jobs", headers=token(), json={"task": "edges-open", "kwargs": {"data": deep(levels)}})
    assert r.status_code == 400 and "levels deep" in r.json()["error"]["message"]
    assert queued(conn, env) == 0 and not conn.keys("rq:job:*edges*")


def store_raw_job(conn, queue: str, job_id: str, **fields) -> None:
    """A job hash as another producer may have left it: plain RQ's pickle, or data nested past every bound."""
    conn.hset(
        f"rq:job:{job_id}",
        mapping={"status": "queued", "origin": queue, "created_at": "2026-01-01T00:00:00.000000Z", **fields},
    )


def test_a_pickled_job_is_a_422_not_a_500(client, token, conn, env):
    data = pickle.dumps(("os.system", None, ("true",), {}))
    store_raw_job(conn, env["GENQUEUE_QUEUE"], "edges-pickled", data=data, meta=pickle.dumps({}))
    r = client.get("/api/jobs/edges-pickled", headers=token("ops", admin=True))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "UNREADABLE_JOB" and "edges-pickled" in r.json()["error"]["message"]
    page = client.get("/api/jobs/edges-pickled/retry", headers=token("ops", admin=True))
    assert page.status_code != 500


def test_stored_deep_kwargs_are_a_422_not_a_500(client, token, conn, env):
    import json
    import zlib

    raw = json.dumps(["edges-open", None, [], {"data": deep(900)}]).encode()
    store_raw_job(conn, env["GENQUEUE_QUEUE"], "edges-deep", data=zlib.compress(raw), meta=b"{}")
    r = client.get("/api/jobs/edges-deep", headers=token("ops", admin=True))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "UNREADABLE_JOB"


def test_the_dashboard_shows_a_pickled_job_as_unreadable(client, conn, env):
    from tests.api.test_hardening import ui_login

    data = pickle.dumps(("os.system", None, ("true",), {}))
    store_raw_job(conn, env["GENQUEUE_QUEUE"], "edges-ui-pickled", data=data, meta=pickle.dumps({}))
    ui_login(client, conn, "ops-edges", admin=True)
    r = client.get("/ui/jobs?id=edges-ui-pickled")
    assert r.status_code == 422 and "cannot be read" in r.text


def test_replay_with_patch_previews_an_entry_of_a_user_task(client, conn, store, settings):
    from tests.api.test_hardening import ui_login
    from tests.dlq_helpers import make_entry

    job_id = f"{settings.queue}-task"
    entry = make_entry(job_id, queue=settings.queue)
    entry["func"], entry["args"], entry["kwargs"] = "edges-keyed", [], {"prompt": "hi", "model": "a"}
    store.add(entry)
    csrf = ui_login(client, conn, "ops-edges", admin=True)
    r = client.post(f"/ui/dlq/{job_id}/retry", data={"csrf": csrf, "payload_patch": '{"model": "b"}'})
    assert r.status_code == 200 and ("&#34;b&#34;" in r.text or '"b"' in r.text), r.text[-500:]
    bad = client.post(f"/ui/dlq/{job_id}/retry", data={"csrf": csrf, "payload_patch": '{"modle": "b"}'})
    assert bad.status_code == 400 and "payload patch" in bad.text
    assert store.exists(job_id) and conn.llen(f"rq:queue:{settings.queue}") == 0


def test_a_payload_whose_params_override_the_request_is_a_400(client, token, conn, env):
    payload = {"prompt": "p", "model": "cheap-mini", "params": {"extra_body": {"model": "expensive-large"}}}
    r = client.post("/api/jobs", headers=token(), json={"payload": payload})
    assert r.status_code == 400 and "extra_body" in r.json()["error"]["message"]
    assert queued(conn, env) == 0


@pytest.mark.parametrize(
    ("base", "setting", "secure"),
    [("https://testserver", None, True), ("http://testserver", None, False), ("http://testserver", True, True)],
)
def test_the_session_cookie_is_secure_over_https_or_when_the_setting_says_so(
    settings, conn, api_config, base, setting, secure
):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.ui import sessions
    from genqueue.tenants.tenancy import ADMIN_ROLE, Principal

    app = create_app(settings, replace(api_config, cookie_secure=setting), conn)
    with TestClient(app, base_url=base) as c:
        code = sessions.create_login(conn, Principal("ops", "ops", frozenset({ADMIN_ROLE})))
        r = c.get(f"/ui/login?code={code}", follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert r.status_code == 303 and sessions.COOKIE in cookie
    assert ("secure" in cookie.lower().split("; ")) is secure, cookie


@pytest.fixture
def live_worker_tasks(conn):
    """A live worker's published tasks, none of them importable by this API process."""
    from genqueue.backend import keys
    from genqueue.tasks import catalogue
    from genqueue.tasks.registry import TaskSpec

    def remote(prompt: str, model: str = "m") -> dict:
        return {}

    name = f"edges-worker-{uuid.uuid4().hex[:6]}"
    specs = [
        TaskSpec("remote.open", remote, api=True, timeout=7, limit_key="p:{model}"),
        TaskSpec("remote.closed", remote),
    ]
    conn.sadd(keys.WORKERS, name)
    conn.set(keys.alive(name), b"1", ex=60)
    catalogue.publish(conn, name, specs)
    yield
    conn.srem(keys.WORKERS, name)
    conn.delete(keys.alive(name), keys.worker_tasks(name))


def test_enqueue_by_name_over_http_uses_the_live_workers_catalogue(client, token, conn, env, live_worker_tasks):
    r = client.post("/api/jobs", headers=token(), json={"task": "remote.open", "kwargs": {"prompt": "hi"}})
    assert r.status_code == 201, r.text
    assert fetch_job(conn, r.json()["data"]["id"]).timeout == 7  # the declared timeout, from the catalogue
    r = client.post(
        "/api/jobs", headers=token(), json={"task": "remote.open", "kwargs": {"prompt": "hi", "model": "a b"}}
    )
    assert r.status_code == 400 and "limit key" in r.json()["error"]["message"]
    r = client.post("/api/jobs", headers=token(), json={"task": "remote.open", "kwargs": {"promt": "typo"}})
    assert r.status_code == 400
    r = client.post("/api/jobs", headers=token(), json={"task": "remote.closed", "kwargs": {"prompt": "x"}})
    assert r.status_code == 404  # not open to tenants
    admin = token("ops", admin=True)
    r = client.post("/api/jobs", headers=admin, json={"task": "remote.nosuch", "kwargs": {}})
    assert r.status_code == 404 and "remote.open" in r.json()["error"]["message"]
    assert queued(conn, env) == 1
    r = client.post("/api/jobs", headers=token(), json={"task": "remote.nosuch", "kwargs": {}, "check": False})
    assert r.status_code == 403
    r = client.post("/api/jobs", headers=admin, json={"task": "remote.nosuch", "kwargs": {}, "check": False})
    assert r.status_code == 201 and queued(conn, env) == 2


def test_a_dlq_entry_nested_too_deeply_is_a_422_and_lists_still_work(client, conn, store, settings, token):
    from tests.api.test_hardening import ui_login
    from tests.dlq_helpers import make_entry

    job_id = f"{settings.queue}-deep"
    entry = make_entry(job_id, queue=settings.queue)
    entry["func"], entry["args"], entry["kwargs"] = "some.task", [], {"data": deep(900)}
    store.add(entry)
    admin = token("ops", admin=True)
    r = client.get(f"/api/dlq/{job_id}", headers=admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "CORRUPT_ENTRY"
    r = client.get(f"/api/jobs/{job_id}", headers=admin)
    assert r.status_code == 422
    listed = client.get("/api/dlq", headers=admin)
    assert listed.status_code == 200 and [e["job_id"] for e in listed.json()["data"]] == [job_id]
    ui_login(client, conn, "ops-edges", admin=True)
    assert client.get(f"/ui/dlq/{job_id}").status_code == 422
    assert client.get("/ui/dlq").status_code == 200
