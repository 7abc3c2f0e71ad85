"""The priority and weight rules the fair pop uses (pure)."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.tenants.fair import route
from genqueue.tenants.fairness import MAX_WEIGHT, PRIORITIES, check_priority, check_weight, offsets_ms


def test_priorities_are_three_names_any_case_and_none_is_normal():
    assert PRIORITIES == ("high", "normal", "low")
    assert [check_priority(p) for p in ("high", "NORMAL", "Low", None)] == ["high", "normal", "low", "normal"]
    for bad in ("urgent", "", 1, 0.5, ["high"]):
        with pytest.raises(InvalidInput, match="priority must be one of high, normal, low"):
            check_priority(bad)


def test_weights_are_whole_numbers_from_1_to_the_cap():
    assert check_weight(1) == 1 and check_weight(MAX_WEIGHT) == MAX_WEIGHT
    for bad in (0, -1, MAX_WEIGHT + 1, 2.0, True, "3", None):
        with pytest.raises(InvalidInput, match="weight must be a whole number"):
            check_weight(bad)


def test_offsets_put_high_before_and_low_after_by_the_same_step():
    high, normal, low = offsets_ms(60)
    assert (high, normal, low) == (-60_000, 0, 60_000)
    # Aging: a low job enqueued at t passes a high job enqueued after t + 120 s.
    t = 1_000_000
    assert t + low < (t + 120_001) + high


def test_route_reads_the_tenant_and_priority_the_lua_reads():
    assert route(None) == ("", "normal")
    assert route({"genqueue": {"tenant": "acme", "priority": "low"}}) == ("acme", "low")
    assert route({"genqueue": {"tenant": None}}) == ("", "normal")
    assert route({"other": 1}) == ("", "normal")
