"""GET /api/limits: admins see every limit key as `genqueue limits --json` does (state, in flight / cap,
rate, parked, counters), read from the state real workers left; anyone else gets the standard 403."""

from __future__ import annotations

import uuid

from genqueue.limits.store import set_limits


def test_admins_see_the_state_workers_left(client, token, limited_keys):
    r = client.get("/api/limits", headers=token("ops", admin=True))
    assert r.status_code == 200
    rows = {row["key"]: row for row in r.json()["data"]}
    held, paused = rows[limited_keys.held], rows[limited_keys.paused]
    assert (held["state"], held["in_flight"], held["concurrency"], held["parked"]) == ("closed", 1, 1, 2)
    assert held["overridden"] is True and held["paused_for_s"] is None and held["counters"]["throttled"] == 2
    assert paused["state"] == "paused" and 0 < paused["paused_for_s"] <= 300
    assert paused["counters"]["rate_limited"] == 1 and paused["concurrency"] is None and paused["rate"] is None


def test_one_key_and_its_settings(client, token, conn):
    key = f"api-{uuid.uuid4().hex[:8]}"
    set_limits(conn, key, concurrency=4, rate="5/s")
    r = client.get("/api/limits", params={"key": key}, headers=token("ops", admin=True))
    [row] = r.json()["data"]
    assert (row["key"], row["state"], row["concurrency"], row["rate"], row["in_flight"], row["parked"]) == (
        key, "closed", 4, "5/s", 0, 0)
    bad = client.get("/api/limits", params={"key": "no spaces"}, headers=token("ops", admin=True))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_tenants_and_strangers_are_refused(client, token, conn):
    set_limits(conn, f"api-{uuid.uuid4().hex[:8]}", concurrency=1)
    r = client.get("/api/limits", headers=token("alice"))
    assert r.status_code == 403
    assert r.json() == {"error": {"code": "FORBIDDEN", "message": "this needs the admin role", "retryable": False}}
    assert client.get("/api/limits").json()["error"]["code"] == "UNAUTHORIZED"
