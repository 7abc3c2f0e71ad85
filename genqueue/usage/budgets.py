"""Budgets, the pure rules: "50/d" and "2M/month" parsed, the period a moment falls in (the id of its usage
bucket, backend/keys.py) and when that period resets, and the check of a tenant's spend against its budget.

A budget caps one unit (tokens, input_tokens, output_tokens, images, usd) per UTC day ("/d") or UTC calendar
month ("/month"; "/m" is read as month too: a budget has no minute). When any of a tenant's caps is reached,
its new jobs are refused (`refuse`, HTTP 402) or parked until the period resets (`park`: scheduled for the
reset). No Redis here: `usage/budget_store.py` reads and writes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import BudgetSpent, InvalidInput

UNITS = ("tokens", "input_tokens", "output_tokens", "images", "usd")
PERIODS = ("d", "month")
PERIOD_NAMES = {"d": "day", "month": "month"}
_PERIOD_ALIASES = {"d": "d", "day": "d", "m": "month", "mo": "month", "month": "month"}
WHEN_SPENT = ("refuse", "park")
NO_TENANT = "*"  # tenants.fairness.NO_TENANT: the jobs with no tenant (the usage buckets count them so)
MAX_AMOUNT = 1e15  # past this an amount is a typo (`--tokens 1e30/d`); a budget that large is no budget
_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}
_BUDGET = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Cap:
    unit: str
    period: str  # "d" or "month"
    amount: float

    def __str__(self) -> str:
        return f"{number(self.amount)}/{self.period}"


@dataclass(frozen=True)
class Budget:
    caps: tuple[Cap, ...] = ()
    when_spent: str = "refuse"

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "caps": [{"unit": c.unit, "period": c.period, "amount": c.amount} for c in self.caps],
            "when_spent": self.when_spent,
        }

    @classmethod
    def from_json(cls, raw: str | bytes) -> Budget:
        data = json.loads(raw)
        caps = tuple(Cap(c["unit"], c["period"], float(c["amount"])) for c in data.get("caps", ()))
        return cls(caps, data.get("when_spent", "refuse"))


@dataclass(frozen=True)
class Breach:
    """The caps a tenant has reached, and when the last of their periods resets (when new jobs may run)."""

    caps: tuple[Cap, ...]
    used: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (unit, period) -> amount used
    resets_at: float = 0.0

    def describe(self) -> str:
        return ", ".join(
            f"{c.unit} {number(self.used.get((c.unit, c.period), 0.0))} of {number(c.amount)} this "
            f"{PERIOD_NAMES[c.period]}"
            for c in self.caps
        )


def number(value: float) -> str:
    """12, 0.5, 2000000: an amount as people read it (no float noise)."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    return unit


def check_tenant(tenant: str) -> str:
    """The rule of tenants.credits.check_tenant (this layer cannot import it): 1-200 characters, no spaces."""
    if not isinstance(tenant, str) or not tenant or len(tenant) > 200 or any(c.isspace() for c in tenant):
        raise InvalidInput(f"invalid tenant {tenant!r}: 1-200 characters, no spaces")
    return tenant


def parse_cap(unit: str, text: str) -> Cap:
    """'50/d', '$50/d', '2M/month', '200k/m' (month), '0.5/day' → Cap; InvalidInput otherwise."""
    check_unit(unit)
    match = _BUDGET.match(text or "") if isinstance(text, str) else None
    period = _PERIOD_ALIASES.get(match.group(3)) if match else None
    if match is None or period is None:
        raise InvalidInput(f"--{unit.replace('_', '-')} must look like 50/d, 2M/month or 0.5/d, not {text!r}")
    return Cap(unit, period, check_amount(float(match.group(1)) * _SUFFIX[match.group(2)], unit))


def check_amount(amount: Any, unit: str) -> float:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidInput(f"the {unit} budget must be a number, not {amount!r}")
    if not math.isfinite(amount) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidInput(f"the {unit} budget must be above 0 and at most {MAX_AMOUNT:g}, not {amount!r}")
    return float(amount)


def make_budget(caps: Iterable[Cap], when_spent: str = "refuse") -> Budget:
    """A budget of one cap per (unit, period) at most; at least one cap."""
    if when_spent not in WHEN_SPENT:
        raise InvalidInput(f"when_spent must be one of {', '.join(WHEN_SPENT)}, not {when_spent!r}")
    caps = tuple(caps)
    if not caps:
        raise InvalidInput("a budget needs at least one cap, e.g. --usd 50/d or --tokens 2M/month")
    seen: set[tuple[str, str]] = set()
    for cap in caps:
        if (cap.unit, cap.period) in seen:
            raise InvalidInput(f"two {cap.unit} budgets per {PERIOD_NAMES[cap.period]}: give one")
        seen.add((cap.unit, cap.period))
    return Budget(tuple(sorted(caps, key=lambda c: (UNITS.index(c.unit), PERIODS.index(c.period)))), when_spent)


def budget_from_body(raw: Mapping[str, Any]) -> Budget:
    """From the API's body: {"usd": "50/d", "tokens": ["2M/month", "100k/d"], "when_spent": "park"}."""
    caps: list[Cap] = []
    for unit in UNITS:
        value = raw.get(unit)
        for text in [value] if isinstance(value, str) else value or ():
            caps.append(parse_cap(unit, text))
    return make_budget(caps, raw.get("when_spent") or "refuse")


# -- periods -------------------------------------------------------------------------------------------------
def day_of(now: float) -> int:
    """The UTC day's id (keys.usage_tenant_day): unix seconds // 86400."""
    return int(now // 86400)


def month_of(now: float) -> str:
    """The UTC calendar month's id (keys.usage_tenant_month): "YYYYMM"."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m")


def period_id(period: str, now: float) -> str:
    return str(day_of(now)) if period == "d" else month_of(now)


def resets_at(period: str, now: float) -> float:
    """Unix time the period containing `now` ends: the next UTC midnight, or the next month's first day."""
    if period == "d":
        return float((day_of(now) + 1) * 86400)
    at = datetime.fromtimestamp(now, UTC)
    first = datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC)
    return first.timestamp()


# -- the check -----------------------------------------------------------------------------------------------
def check(budget: Budget, used: Mapping[str, Mapping[str, float]], now: float) -> Breach | None:
    """`used` is {"d": {unit: amount}, "month": {unit: amount}} for the current periods. A cap is reached when
    the amount used is at or past it; None when none is."""
    reached = tuple(c for c in budget.caps if used.get(c.period, {}).get(c.unit, 0.0) >= c.amount)
    if not reached:
        return None
    amounts = {(c.unit, c.period): float(used.get(c.period, {}).get(c.unit, 0.0)) for c in reached}
    return Breach(reached, amounts, max(resets_at(c.period, now) for c in reached))


def refusal(tenant: str, breach: Breach) -> BudgetSpent:
    when = datetime.fromtimestamp(breach.resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return BudgetSpent(
        f"tenant {tenant}'s budget is spent ({breach.describe()}); new jobs are refused until {when}; "
        "nothing was enqueued",
        breach.resets_at,
    )
