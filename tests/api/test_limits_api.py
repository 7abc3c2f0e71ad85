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
        key,
        "closed",
        4,
        "5/s",
        0,
        0,
    )
    bad = client.get("/api/limits", params={"key": "no spaces"}, headers=token("ops", admin=True))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_tenants_and_strangers_are_refused(client, token, conn):
    set_limits(conn, f"api-{uuid.uuid4().hex[:8]}", concurrency=1)
    r = client.get("/api/limits", headers=token("alice"))
    assert r.status_code == 403
    assert r.json() == {"error": {"code": "FORBIDDEN", "message": "this needs the admin role", "retryable": False}}
    assert client.get("/api/limits").json()["error"]["code"] == "UNAUTHORIZED"


def row(key: str, state: str, paused_for_s: float | None = None, **extra) -> dict:
    return {
        "key": key,
        "state": state,
        "paused_for_s": paused_for_s,
        "in_flight": 0,
        "concurrency": 2,
        "rate": None,
        "window_calls": 0,
        "parked": 0,
        "overridden": False,
        "counters": {},
        **extra,
    }


def test_the_providers_page_has_a_badge_for_every_state_and_an_empty_state():
    """The breaker's states (open, half-open) cannot be made by workers yet: the template renders rows of
    every state the limits store may report, and the page without any key."""
    from genqueue.api.ui.routes import templates, time_left

    page = templates.get_template("providers.html")
    html = page.render(
        session=None,
        limits=[
            row("a", "closed"),
            row("b", "paused", 42.4),
            row("c", "open", 3725),
            row("d", "half-open", rate_limited_1m=7),
        ],
    )
    for state in ("closed", "paused", "open", "half-open"):
        assert f'<span class="badge {state}">{state}</span>' in html
    assert "42 s left" in html and "1 h 2 min left" in html and '<td class="rate-limited-1m">7</td>' in html
    empty = page.render(session=None, limits=[])
    assert 'id="no-limits"' in empty and "genqueue limits set" in empty and 'id="limits"' not in empty
    assert [time_left(s) for s in (None, 0.4, 59.6, 60, 298, 3600, 3725)] == [
        "",
        "0 s",
        "1 min",
        "1 min",
        "4 min 58 s",
        "1 h",
        "1 h 2 min",
    ]


def test_admins_resume_a_paused_key_and_it_is_audited(client, token, conn):
    from genqueue.backend import audit, keys

    key = f"api-{uuid.uuid4().hex[:8]}"
    set_limits(conn, key, concurrency=1)
    conn.set(keys.limit_prefix(key) + "pause", 1, px=600_000)
    assert client.post(f"/api/limits/{key}/resume", headers=token("alice")).status_code == 403
    r = client.post(f"/api/limits/{key}/resume", headers=token("ops", admin=True))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["key"] == key and 500 < r.json()["data"]["paused_for_s"] <= 600
    assert conn.exists(keys.limit_prefix(key) + "pause") == 0
    [entry] = [a for a in audit.recent(conn, 50) if a["action"] == "limits.resume" and a["filters"]["key"] == key]
    assert entry["who"].startswith("ops (tenant")
    bad = client.post("/api/limits/no%20spaces/resume", headers=token("ops", admin=True))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_admins_set_unit_limits_and_an_estimate_over_them_is_refused_422(client, token, conn, monkeypatch):
    """PUT /api/limits/{key} sets tokens/images/usd as `genqueue limits set` does (audited; tenants refused);
    a generate job whose openai estimate (max_tokens + prompt / 4) alone exceeds the key's tokens is 422."""
    model = f"gpt-{uuid.uuid4().hex[:8]}"
    key = f"openai:{model}"
    admin = token("ops", admin=True)
    assert client.put(f"/api/limits/{key}", json={"tokens": "1k/m"}, headers=token("alice")).status_code == 403
    r = client.put(f"/api/limits/{key}", json={"tokens": "1k/m", "usd": "200/d", "concurrency": 4}, headers=admin)
    assert r.status_code == 200, r.text
    row = r.json()["data"]
    assert row["concurrency"] == 4 and row["overridden"] is True
    assert row["units"] == {
        "tokens": {"limit": "1k/m", "used": 0, "reserved": 0},
        "usd": {"limit": "200/d", "used": 0, "reserved": 0},
    }
    listed = client.get("/api/limits", params={"key": key}, headers=admin).json()["data"][0]
    assert listed["units"]["tokens"]["limit"] == "1k/m"
    for bad in ({"tokens": "90k"}, {"images": "0/m"}, {"tokenz": "1/m"}, {}):
        r = client.put(f"/api/limits/{key}", json=bad, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", (bad, r.text)
    monkeypatch.setenv("GENQUEUE_PROVIDER", "openai")
    payload = {"prompt": "p" * 40, "model": model, "params": {"max_tokens": 995}}  # 995 + 10 > 1000
    r = client.post("/api/jobs", json={"payload": payload}, headers=token("alice"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "OVER_LIMIT", r.text
    assert "exceeds the limit 1k/m" in r.json()["error"]["message"]
    payload["params"]["max_tokens"] = 990
    assert client.post("/api/jobs", json={"payload": payload}, headers=token("alice")).status_code in (200, 201, 202)
