"""/api/dlq (admin) through HTTP on real dead-lettered jobs: list with filters and cursor, stats, one entry
(secrets masked), replay exactly once, delete, bulk replay bounded and resumable."""

from __future__ import annotations

from genqueue.jobs.enqueue import enqueue
from tests.api.test_jobs_api import drain


def dead_jobs(conn, settings, env, n: int, outcome: str = "401") -> list[str]:
    ids = [
        enqueue(
            conn,
            settings.queue,
            {"prompt": f"p{i}", "user_id": f"u{i % 2}", "api_key": "sk-secret", "simulate": [outcome, "ok"]},
        ).job.id
        for i in range(n)
    ]
    drain(env)
    return ids


def test_list_filter_page_show_stats(client, token, conn, settings, env, store):
    ids = dead_jobs(conn, settings, env, 5)
    admin = token("ops", admin=True)
    page = client.get("/api/dlq?limit=2", headers=admin).json()
    assert page["total"] == 5 and len(page["data"]) == 2 and page["next_cursor"]
    rest = client.get(f"/api/dlq?limit=10&cursor={page['next_cursor']}", headers=admin).json()
    assert {e["job_id"] for e in page["data"] + rest["data"]} == set(ids)
    only_u0 = client.get("/api/dlq?user=u0&kind=permanent", headers=admin).json()
    assert {e["user_id"] for e in only_u0["data"]} == {"u0"} and len(only_u0["data"]) == 3
    assert client.get("/api/dlq?since=1h", headers=admin).json()["total"] == 5
    assert client.get("/api/dlq?since=soon", headers=admin).status_code == 400
    assert client.get("/api/dlq?cursor=garbage", headers=admin).status_code == 400
    entry = client.get(f"/api/dlq/{ids[0]}", headers=admin)
    assert entry.status_code == 200 and "sk-secret" not in entry.text
    assert entry.json()["data"]["args"][0]["api_key"] == "***"
    assert client.get("/api/dlq/nope", headers=admin).status_code == 404
    stats = client.get("/api/dlq/stats", headers=admin).json()["data"]
    assert stats["total"] == 5 and stats["by_kind"] == {"PERMANENT": 5}


def test_replay_exactly_once_and_delete(client, token, conn, settings, env, store):
    first, second = dead_jobs(conn, settings, env, 2)
    admin = token("ops", admin=True)
    r = client.post(f"/api/dlq/{first}/retry", headers=admin, json={"payload_patch": {"prompt": "patched"}})
    assert r.status_code == 200 and r.json()["data"]["status"] == "queued"
    assert conn.hget(f"rq:job:{first}", "status") == b"queued" and not store.exists(first)
    again = client.post(f"/api/dlq/{first}/retry", headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    assert client.delete(f"/api/dlq/{second}", headers=admin).status_code == 200
    assert not store.exists(second)
    assert client.delete(f"/api/dlq/{second}", headers=admin).status_code == 404


def test_bulk_replay_dry_run_bounded_and_resumable(client, token, conn, settings, env, store):
    ids = dead_jobs(conn, settings, env, 5)
    admin = token("ops", admin=True)
    dry = client.post("/api/dlq/retry", headers=admin, json={"dry_run": True, "kind": "PERMANENT"}).json()["data"]
    assert dry["matching"] == 5 and set(dry["sample"]) == set(ids) and store.count() == 5
    first = client.post("/api/dlq/retry", headers=admin, json={"limit": 2}).json()["data"]
    assert first["replayed"] == 2 and first["next_cursor"] and store.count() == 3
    rest = client.post("/api/dlq/retry", headers=admin, json={"cursor": first["next_cursor"]}).json()["data"]
    assert rest["replayed"] == 3 and rest["next_cursor"] is None and store.count() == 0
    assert sorted(first["ids"] + rest["ids"]) == sorted(ids)
    assert client.post("/api/dlq/retry", headers=admin, json={"reason": "nope"}).status_code == 400
