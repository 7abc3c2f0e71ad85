"""limits/rules.py and the pure readers of limits/store.py: rates, declarations, key templates, the
breaker's event format and state."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.limits.rules import (
    DEFAULT_COOLDOWN_S,
    BreakerEvent,
    Limits,
    Rate,
    generate_key,
    parse_event,
    parse_rate,
    render_key,
)
from genqueue.limits.store import breaker_state, last_minute


@pytest.mark.parametrize(
    "text, rate, shown",
    [
        ("5/s", Rate(5, 1000), "5/s"),
        ("300/m", Rate(300, 60_000), "300/m"),
        ("10/2s", Rate(10, 2000), "10/2s"),
        ("1000/h", Rate(1000, 3_600_000), "1000/h"),
        (" 3 / 250ms ", Rate(3, 250), "3/250ms"),
    ],
)
def test_rates(text, rate, shown):
    assert parse_rate(text) == rate and str(rate) == shown


@pytest.mark.parametrize("text", ["5", "0/s", "5/0s", "five/s", "5/fortnight", ""])
def test_bad_rates_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_rate(text)


def test_a_declaration_and_its_defaults():
    limits = Limits.parse({"concurrency": 3, "rate": "5/s", "max_wait": "1h", "cooldown": "2m"})
    assert (limits.concurrency, limits.rate, limits.max_wait_s, limits.cooldown_s) == (3, Rate(5, 1000), 3600.0, 120.0)
    assert limits.args() == [3, 5, 1000] and limits.cooldown_ms() == 120_000
    assert Limits.parse(None).cooldown_ms() == DEFAULT_COOLDOWN_S * 1000
    assert Limits.parse({"cooldown": 0}).cooldown_ms() == 0  # the breaker turned off for this key


@pytest.mark.parametrize(
    "raw",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"max_wait": 0},
        {"max_wait": "soon"},
        {"cooldown": -1},
        {"cooldown": "x"},
        {"burst": 3},
    ],
)
def test_bad_declarations_are_refused(raw):
    with pytest.raises(InvalidInput):
        Limits.parse(raw)


def test_keys():
    assert render_key("openai:{model}", {"model": "gpt-image-1"}) == "openai:gpt-image-1"
    assert render_key("{missing}", {}) == "default"
    assert generate_key("simulated", {"model": "a b/c"}) == "simulated:a_b/c"
    assert generate_key("openai", {}) == "openai:default"
    with pytest.raises(InvalidInput):
        render_key("x:{model}", {"model": "spaces are not allowed"})


def test_breaker_events():
    assert parse_event(b"opened:6:8:30000") == BreakerEvent("opened", 6, 8, 30.0)
    assert parse_event("reopened:1:1:60000") == BreakerEvent("reopened", 1, 1, 60.0)
    assert parse_event("closed") == BreakerEvent("closed")
    assert parse_event("") is None and parse_event(None) is None and parse_event("3") is None


def test_breaker_state():
    now = 1_000_000
    assert breaker_state({}, 0, now) == ("closed", 0)
    assert breaker_state({}, 1500, now) == ("paused", 1500)
    assert breaker_state({"state": "open", "until": str(now + 2000)}, 1500, now) == ("open", 2000)
    assert breaker_state({"state": "open", "until": str(now - 1)}, 0, now) == ("half-open", 0)  # cooldown over
    assert breaker_state({"state": "half-open", "probe": "j1"}, 0, now) == ("half-open", 0)


def test_the_last_minute_counts_only_its_own_buckets():
    now = 100 * 10_000 + 5  # bucket 100, slot 4
    health = {
        b"b4": b"100",
        b"c4": b"3",
        b"f4": b"2",
        b"r4": b"1",
        b"b0": b"96",
        b"c0": b"5",
        b"f0": b"5",
        b"r0": b"0",  # 40 s ago: counted
        b"b3": b"93",
        b"c3": b"7",
        b"f3": b"7",
        b"r3": b"9",
    }  # 70 s ago: stale, not counted
    assert last_minute(health, now) == {"c": 8, "f": 7, "r": 1}


@pytest.mark.parametrize(
    ("calls", "fails", "tenant_calls", "tenant_fails", "tenant", "verdict"),
    [
        (9, 5, 5, 5, "A", "tenant"),  # A's 5 failures among B's 4 successes: A's own breaker only
        (105, 100, 100, 100, "A", "tenant"),  # A all failing, B's 5 calls fine
        (5, 5, 5, 5, "A", "tenant"),  # A alone: nobody else's calls say the provider is down
        (6, 6, 5, 5, "B", "key"),  # A's 5 and B's 1 failing: not one tenant's
        (5, 5, 3, 3, "A", "key"),  # two tenants failing
        (25, 6, 5, 5, "A", "tenant"),  # the key as a whole is fine: A's storm is A's
        (4, 4, 4, 4, "A", ""),  # too few calls to judge
        (10, 5, 5, 5, "A", "tenant"),  # key not past half (5 of 10); A's own is
        (5, 5, 5, 5, "-", "key"),  # jobs without a tenant are the key's, as before
        (8, 4, 8, 4, "-", ""),
    ],
)
def test_breaker_verdict(calls, fails, tenant_calls, tenant_fails, tenant, verdict):
    from genqueue.limits.rules import breaker_verdict

    assert breaker_verdict(calls, fails, tenant_calls, tenant_fails, tenant, 5) == verdict
