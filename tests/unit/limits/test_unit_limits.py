"""Unit limits, the pure part: '90k/m', '50/m', '200/d' parsed (k and M suffixes, s/m/h/d windows with an
optional count), refused past their bounds, shown back as given; an estimate over a limit alone is named."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.limits.rules import Limits, UnitLimit, check_amounts, over_limit, parse_unit_limit


@pytest.mark.parametrize(
    ("text", "amount", "window_ms", "shown"),
    [
        ("90k/m", 90_000, 60_000, "90k/m"),
        ("50/m", 50, 60_000, "50/m"),
        ("200/d", 200, 86_400_000, "200/d"),
        ("2M/h", 2_000_000, 3_600_000, "2M/h"),
        ("1.5M/h", 1_500_000, 3_600_000, "1500k/h"),
        ("0.5/d", 0.5, 86_400_000, "0.5/d"),
        ("2000/10s", 2000, 10_000, "2k/10s"),
        (" 12 K / 2 m ", 12_000, 120_000, "12k/2m"),
    ],
)
def test_unit_limits_parse(text, amount, window_ms, shown):
    parsed = parse_unit_limit(text, "tokens")
    assert parsed == UnitLimit(amount, window_ms)
    assert str(parsed) == shown
    assert parse_unit_limit(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text", ["", "90k", "0/m", "5/ms", "5/w", "1e3/m", "-5/m", "5m/m", "2000000000000/s", "5/8d", True]
)
def test_bad_unit_limits_are_one_line_errors(text):
    with pytest.raises(InvalidInput) as err:
        parse_unit_limit(text, "tokens")
    assert "\n" not in str(err.value)


def test_a_declaration_carries_unit_limits_beside_concurrency_and_rate():
    limits = Limits.parse({"concurrency": 4, "rate": "5/s", "tokens": "90k/m", "images": "50/m", "usd": "200/d"})
    assert limits.units == {
        "tokens": UnitLimit(90_000, 60_000),
        "images": UnitLimit(50, 60_000),
        "usd": UnitLimit(200, 86_400_000),
    }
    assert limits.unit_args() == [90_000, 60_000, 50, 60_000, 200, 86_400_000]
    assert Limits.parse({"concurrency": 1}).unit_args() == [0, 0, 0, 0, 0, 0]
    with pytest.raises(InvalidInput, match="unknown limit field"):
        Limits.parse({"token": "9k/m"})


def test_amounts_are_known_units_and_non_negative_numbers():
    assert check_amounts({"tokens": 10, "usd": 0.5, "images": 0}, "x") == {"tokens": 10.0, "usd": 0.5}
    for bad in ({"tokenz": 1}, {"tokens": -1}, {"tokens": "1"}, {"tokens": True}, [1]):
        with pytest.raises(InvalidInput):
            check_amounts(bad, "x")


def test_an_estimate_over_a_limit_alone_is_named():
    units = {"tokens": UnitLimit(1000, 60_000)}
    assert over_limit({"tokens": 1000}, units) is None
    assert over_limit({"images": 5}, units) is None
    assert "tokens estimate 1001 exceeds the limit 1k/m" in (over_limit({"tokens": 1001}, units) or "")
