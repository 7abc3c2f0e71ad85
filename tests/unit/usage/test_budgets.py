"""The budget rules, pure: parsing "50/d" and "2M/month", the period ids and resets, and the check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from genqueue.errors import BudgetSpent, InvalidInput
from genqueue.tenants.fairness import NO_TENANT as TENANTS_NO_TENANT
from genqueue.usage.budgets import (
    NO_TENANT,
    Budget,
    Cap,
    budget_from_body,
    check,
    day_of,
    make_budget,
    month_of,
    number,
    parse_cap,
    period_id,
    refusal,
    resets_at,
)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("unit", "text", "cap"),
    [
        ("usd", "50/d", Cap("usd", "d", 50.0)),
        ("usd", "$0.5/day", Cap("usd", "d", 0.5)),
        ("tokens", "2M/month", Cap("tokens", "month", 2_000_000.0)),
        ("tokens", "200k/m", Cap("tokens", "month", 200_000.0)),  # a budget has no minute: /m is a month
        ("images", "1.5k / mo", Cap("images", "month", 1500.0)),
        ("output_tokens", "1G/d", Cap("output_tokens", "d", 1e9)),
    ],
)
def test_caps_parse(unit, text, cap):
    assert parse_cap(unit, text) == cap


@pytest.mark.parametrize(
    ("unit", "text"),
    [("usd", "50"), ("usd", "50/h"), ("usd", "0/d"), ("usd", "-1/d"), ("usd", "1e30/d"), ("watts", "1/d"), ("usd", "")],
)
def test_bad_caps_are_refused_in_one_line(unit, text):
    with pytest.raises(InvalidInput) as caught:
        parse_cap(unit, text)
    assert "\n" not in str(caught.value)


def test_a_budget_needs_a_cap_one_per_unit_and_period_and_a_known_choice():
    with pytest.raises(InvalidInput):
        make_budget([])
    with pytest.raises(InvalidInput):
        make_budget([Cap("usd", "d", 1), Cap("usd", "d", 2)])
    with pytest.raises(InvalidInput):
        make_budget([Cap("usd", "d", 1)], "shrug")
    both = make_budget([Cap("usd", "month", 100), Cap("tokens", "d", 5), Cap("usd", "d", 10)], "park")
    assert [(c.unit, c.period) for c in both.caps] == [("tokens", "d"), ("usd", "d"), ("usd", "month")]
    assert Budget.from_json(both.to_json()) == both


def test_the_api_body_takes_one_or_a_list_per_unit():
    b = budget_from_body({"usd": "50/d", "tokens": ["2M/month", "100k/d"], "when_spent": "park"})
    assert b.when_spent == "park" and len(b.caps) == 3


def test_period_ids_are_the_bucket_ids_and_resets_are_utc_boundaries():
    now = ts(2026, 12, 31, 23, 59, 30)
    assert day_of(now) == int(now // 86400) and period_id("d", now) == str(day_of(now))
    assert month_of(now) == "202612" and period_id("month", now) == "202612"
    assert resets_at("d", now) == ts(2027, 1, 1)
    assert resets_at("month", now) == ts(2027, 1, 1)
    assert resets_at("month", ts(2026, 2, 10, 12)) == ts(2026, 3, 1)
    assert resets_at("d", ts(2026, 2, 10, 0)) == ts(2026, 2, 11)


def test_the_check_finds_reached_caps_and_the_latest_reset():
    now = ts(2026, 5, 17, 10)
    budget = make_budget([parse_cap("usd", "50/d"), parse_cap("tokens", "2M/month")])
    assert check(budget, {}, now) is None
    assert check(budget, {"d": {"usd": 49.99}, "month": {"tokens": 1_999_999}}, now) is None
    day = check(budget, {"d": {"usd": 50.0}}, now)
    assert day is not None and [c.unit for c in day.caps] == ["usd"] and day.resets_at == ts(2026, 5, 18)
    both = check(budget, {"d": {"usd": 80.0}, "month": {"tokens": 2_000_000}}, now)
    assert both is not None and both.resets_at == ts(2026, 6, 1)  # new jobs wait for the later reset
    assert "usd 80 of 50 this day" in both.describe() and "tokens 2000000 of 2000000 this month" in both.describe()
    err = refusal("acme", both)
    assert isinstance(err, BudgetSpent) and err.exit_code == 4 and err.code == "BUDGET_SPENT"
    assert "2026-06-01 00:00 UTC" in str(err) and err.resets_at == ts(2026, 6, 1)


def test_numbers_read_plainly_and_no_tenant_is_the_fair_pops():
    assert (number(2_000_000.0), number(0.5), number(12.125)) == ("2000000", "0.5", "12.125")
    assert NO_TENANT == TENANTS_NO_TENANT


@pytest.mark.parametrize("tenant", ["acme", "*", "a" * 200, "", "a" * 201, "two words", "tab\there"])
def test_the_tenant_rule_is_the_credits_one(tenant):
    from genqueue.tenants.credits import check_tenant as credits_rule
    from genqueue.usage.budgets import check_tenant

    def verdict(rule) -> bool:
        try:
            rule(tenant)
        except InvalidInput:
            return False
        return True

    assert verdict(check_tenant) == verdict(credits_rule)
