"""/api/usage and /api/budgets over HTTP: the rows equal the buckets; a tenant sees only its own usage and
budget whatever it asks; admins set and clear budgets; a spent budget answers 402 BUDGET_SPENT at enqueue;
/metrics exports usage and budgets with labels bounded to the budgeted tenants."""

from __future__ import annotations

import uuid

from genqueue.usage.budget_store import get_budget
from tests.usage_helpers import record


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"a-{tag}", f"b-{tag}"


def test_usage_equals_the_buckets_and_a_tenant_sees_only_its_own(client, token, conn):
    a, b = names()
    record(conn, a, "usd", 1.5, task="chat", key="openai:gpt")
    record(conn, a, "tokens", 300, task="chat", key="openai:gpt")
    record(conn, b, "usd", 9, task="img", key="openai:img")
    admin = token("ops", admin=True)
    r = client.get(f"/api/usage?tenant={a}&by=tenant,task,key&since=24h", headers=admin)
    assert r.status_code == 200, r.json()
    assert r.json()["data"] == [
        {"tenant": a, "task": "chat", "key": "openai:gpt", "usage": {"tokens": 300.0, "usd": 1.5}}
    ]
    everyone = {row["tenant"] for row in client.get("/api/usage", headers=admin).json()["data"]}
    assert {a, b} <= everyone
    for query in ("", f"?tenant={b}", "?tenant=*", "?by=task"):  # forced to its own, whatever it asks
        mine = client.get(f"/api/usage{query}", headers=token("alice", tenant=a))
        assert mine.status_code == 200 and mine.json()["tenant"] == a
        assert b not in mine.text and "img" not in mine.text
        assert sum(row["usage"].get("usd", 0) for row in mine.json()["data"]) == 1.5
    bad = client.get("/api/usage?by=colour", headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get("/api/usage?since=90d", headers=admin).status_code == 400
    assert client.get("/api/usage").json()["error"]["code"] == "UNAUTHORIZED"


def test_admins_set_and_clear_budgets_and_tenants_read_only_their_own(client, token, conn):
    a, b = names()
    admin = token("ops", admin=True)
    r = client.put(f"/api/budgets/{a}", json={"usd": "50/d", "tokens": ["2M/month"]}, headers=admin)
    assert r.status_code == 200, r.json()
    assert [(c["unit"], c["period"], c["limit"]) for c in r.json()["data"]["caps"]] == [
        ("tokens", "month", 2e6),
        ("usd", "d", 50.0),
    ]
    client.put(f"/api/budgets/{b}", json={"images": "10/d", "when_spent": "park"}, headers=admin)
    alice = token("alice", tenant=a)
    assert client.get(f"/api/budgets/{a}", headers=alice).json()["data"]["tenant"] == a
    refused = client.get(f"/api/budgets/{b}", headers=alice)
    assert refused.status_code == 403 and "images" not in refused.text
    assert [row["tenant"] for row in client.get("/api/budgets", headers=alice).json()["data"]] == [a]
    assert {a, b} <= {row["tenant"] for row in client.get("/api/budgets", headers=admin).json()["data"]}
    for method, body in (("put", {"usd": "1/d"}), ("delete", None)):
        answer = client.request(method, f"/api/budgets/{a}", json=body, headers=alice)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "FORBIDDEN"
    assert get_budget(conn, a).caps[1].amount == 50.0  # unchanged
    for bad in ({"usd": "50"}, {}, {"usd": "1/d", "when_spent": "maybe"}, {"usd": 5}):
        answer = client.put(f"/api/budgets/{a}", json=bad, headers=admin)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR", bad
    assert client.delete(f"/api/budgets/{a}", headers=admin).json()["data"] == {"tenant": a, "cleared": True}
    assert client.delete(f"/api/budgets/{a}", headers=admin).status_code == 404
    assert client.get(f"/api/budgets/{a}", headers=alice).status_code == 404
    client.delete(f"/api/budgets/{b}", headers=admin)


def test_a_spent_budget_answers_402_at_enqueue_and_is_in_metrics(client, token, conn):
    a, _ = names()
    admin = token("ops", admin=True)
    client.put(f"/api/budgets/{a}", json={"usd": "2/d"}, headers=admin)
    alice = token("alice", tenant=a)
    assert client.post("/api/jobs", json={"payload": {"prompt": "p"}}, headers=alice).status_code == 201
    record(conn, a, "usd", 2)
    r = client.post("/api/jobs", json={"payload": {"prompt": "p"}}, headers=alice)
    assert r.status_code == 402, r.json()
    error = r.json()["error"]
    assert error["code"] == "BUDGET_SPENT" and error["retryable"] is False and "budget is spent" in error["message"]
    run = client.post("/api/runs", json={"items": [{"prompt": "p"}]}, headers=alice)
    assert run.status_code == 402 and run.json()["error"]["code"] == "BUDGET_SPENT"
    metrics = client.get("/metrics").text
    assert f'genqueue_budget_spent{{tenant="{a}"}} 1.0' in metrics
    assert f'genqueue_budget_used{{period="d",tenant="{a}",unit="usd"}} 2.0' in metrics
    assert 'genqueue_budget_breaches_total{period="d",unit="usd"}' in metrics
    assert 'genqueue_budget_jobs_total{action="refused"}' in metrics
    assert 'genqueue_usage_current_hour{unit="usd"}' in metrics
    client.delete(f"/api/budgets/{a}", headers=admin)
    assert f'tenant="{a}"' not in client.get("/metrics").text  # labelled only while it has a budget
