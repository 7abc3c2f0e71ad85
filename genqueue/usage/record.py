"""What an attempt spent, and the arguments of lua/record.lua that count it in the usage buckets.

The move that ends an attempt (worker/guarded.py's GUARD for a success, a retry or a cancel; RELEASE inside
the dead-letter MULTI) runs record.lua in the same script, so an attempt is counted once, with its move.
The bucket keys are built here from the move's own clock (backend/keys.py is the one place key strings are
made, and every genqueue script takes `now` from its caller), the month as "YYYYMM" in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from ..backend import keys
from ..tenants.fairness import NO_TENANT

RECORD = resources.files("genqueue.usage").joinpath("lua", "record.lua").read_text()
LIMITED_UNITS = ("tokens", "images", "usd")  # what a unit limit settles (limits.rules.UNITS)


def spent(reported: Mapping[str, float] | None, estimate: Mapping[str, float]) -> dict[str, float]:
    """What the attempt spent, as recorded: what it reported (`genqueue.current().usage`), tokens being input
    + output; with no report, its estimate. Zero amounts are left out."""
    if reported:
        out = {unit: float(v) for unit, v in reported.items() if v}
        tokens = float(reported.get("input_tokens", 0) or 0) + float(reported.get("output_tokens", 0) or 0)
        if tokens:
            out["tokens"] = tokens
        return out
    return {unit: float(v) for unit, v in estimate.items() if v}


def settle_of(amounts: Mapping[str, float]) -> dict[str, float]:
    """The part of `spent` a key's unit limits count: tokens, images, usd."""
    return {unit: amounts[unit] for unit in LIMITED_UNITS if amounts.get(unit)}


def month_of(hour: int) -> str:
    """'YYYYMM' (UTC) of an hour number (unix seconds // 3600)."""
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y%m")


def record_args(tenant: str | None, task: str, key: str | None, amounts: Mapping[str, float], now_ms: int) -> list[Any]:
    """record.lua's ARGV (hour, day and month keys, their TTLs, the field prefix, unit/amount pairs); [] when
    there is nothing to record."""
    if not amounts:
        return []
    hour = now_ms // 3_600_000
    who = tenant or NO_TENANT
    sep = keys.USAGE_FIELD_SEP
    args: list[Any] = [
        keys.usage_hour(hour),
        keys.usage_tenant_day(who, now_ms // 86_400_000),
        keys.usage_tenant_month(who, month_of(hour)),
        keys.USAGE_HOUR_TTL_S,
        keys.USAGE_DAY_TTL_S,
        keys.USAGE_MONTH_TTL_S,
        f"{who}{sep}{task}{sep}{key or ''}{sep}",
    ]
    for unit, amount in sorted(amounts.items()):
        args += [unit, repr(float(amount))]
    return args
