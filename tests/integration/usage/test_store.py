"""The usage readers and the budget store against the real server: totals and series equal what the buckets
hold, grouped as asked; a tenant's period totals; budgets set, read and cleared."""

from __future__ import annotations

import time
import uuid

import pytest

from genqueue.errors import InvalidInput, NotFound
from genqueue.usage.budget_store import all_budgets, clear_budget, describe, get_budget, set_budget
from genqueue.usage.budgets import make_budget, parse_cap
from genqueue.usage.store import series, tenant_period_usage, totals
from tests.usage_helpers import record


def test_totals_group_by_tenant_task_and_key(conn):
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    now = time.time()
    record(conn, a, "usd", 1.25, task="chat", key="openai:gpt", at=now)
    record(conn, a, "tokens", 1000, task="chat", key="openai:gpt", at=now)
    record(conn, a, "usd", 0.75, task="image", key="openai:img", at=now - 3 * 3600)
    record(conn, b, "images", 3, task="image", key="openai:img", at=now)
    record(conn, a, "usd", 100, task="chat", key="openai:gpt", at=now - 3 * 86400)  # outside 24h
    mine = totals(conn, 86400, tenant=a, now=now)
    assert mine == [{"tenant": a, "usage": {"tokens": 1000.0, "usd": 2.0}}]
    by_task = totals(conn, 86400, by=("tenant", "task", "key"), tenant=a, now=now)
    assert by_task == [
        {"tenant": a, "task": "chat", "key": "openai:gpt", "usage": {"tokens": 1000.0, "usd": 1.25}},
        {"tenant": a, "task": "image", "key": "openai:img", "usage": {"usd": 0.75}},
    ]
    assert totals(conn, 3600, tenant=a, now=now) == [{"tenant": a, "usage": {"tokens": 1000.0, "usd": 1.25}}]
    assert totals(conn, 7 * 86400, tenant=a, now=now)[0]["usage"]["usd"] == 102.0
    everyone = {r["tenant"]: r["usage"] for r in totals(conn, 86400, now=now)}
    assert everyone[a] == {"tokens": 1000.0, "usd": 2.0} and everyone[b] == {"images": 3.0}
    with pytest.raises(InvalidInput):
        totals(conn, 86400, by=("tenant", "colour"))
    with pytest.raises(InvalidInput):
        totals(conn, 90 * 86400)


def test_series_per_hour_per_key(conn):
    a = f"a-{uuid.uuid4().hex[:6]}"
    now = time.time()
    record(conn, a, "usd", 2, key="k1", at=now)
    record(conn, a, "usd", 1, key="k2", at=now - 2 * 3600)
    drawn = series(conn, 6 * 3600, unit="usd", by="key", tenant=a, now=now)
    assert drawn["hours"][-1] == int(now // 3600) and len(drawn["hours"]) == 7
    assert drawn["series"]["k1"][-1] == 2.0 and sum(drawn["series"]["k1"]) == 2.0
    assert drawn["series"]["k2"][-3] == 1.0 and sum(drawn["series"]["k2"]) == 1.0


def test_tenant_period_usage_reads_the_day_and_month_totals(conn):
    a = f"a-{uuid.uuid4().hex[:6]}"
    record(conn, a, "usd", 3.5)
    record(conn, a, "tokens", 10)
    used = tenant_period_usage(conn, a)
    assert used == {"d": {"usd": 3.5, "tokens": 10.0}, "month": {"usd": 3.5, "tokens": 10.0}}


def test_budgets_are_set_described_and_cleared(conn):
    a = f"a-{uuid.uuid4().hex[:6]}"
    budget = make_budget([parse_cap("usd", "5/d"), parse_cap("tokens", "2M/month")], "park")
    set_budget(conn, a, budget)
    assert get_budget(conn, a) == budget and all_budgets(conn)[a] == budget
    record(conn, a, "usd", 5)
    row = describe(conn, a, budget)
    assert row["spent"] is True and row["when_spent"] == "park"
    assert [(c["unit"], c["limit"], c["used"]) for c in row["caps"]] == [("tokens", 2e6, 0.0), ("usd", 5.0, 5.0)]
    clear_budget(conn, a)
    assert get_budget(conn, a) is None
    with pytest.raises(NotFound):
        clear_budget(conn, a)
    with pytest.raises(InvalidInput):
        set_budget(conn, "two words", budget)
