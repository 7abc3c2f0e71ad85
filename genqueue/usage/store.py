"""Reading the usage buckets the settle path writes (backend/keys.py, "usage and budgets"): totals grouped by
tenant, task and limit key since a time, a per-hour series for charts, and a tenant's totals in the current
day and month (what its budget is checked against). Read only: the writer is the script that ends an attempt.

The hour buckets are the source of every range read (one HGETALL per hour, pipelined; a range is bounded by
the buckets' retention, keys.USAGE_HOUR_TTL_S); the tenant day and month hashes are O(1) reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from ..backend import keys
from ..backend.replies import text
from ..errors import InvalidInput
from .budgets import UNITS, day_of, month_of

GROUPS = ("tenant", "task", "key")
MAX_SINCE_S = keys.USAGE_HOUR_TTL_S  # older hour buckets have expired
HOURS_PER_PIPELINE = 200


@dataclass(frozen=True)
class Entry:
    """One field of an hour bucket."""

    hour: int
    tenant: str
    task: str
    key: str
    unit: str
    amount: float


def check_by(by: Iterable[str] | str | None) -> tuple[str, ...]:
    """ "tenant,task" or ["tenant", "task"] → ("tenant", "task"); the default groups by tenant."""
    names = [b.strip() for b in (by.split(",") if isinstance(by, str) else by or ()) if b.strip()]
    for name in names:
        if name not in GROUPS:
            raise InvalidInput(f"--by takes {', '.join(GROUPS)} (comma-separated), not {name!r}")
    return tuple(dict.fromkeys(names)) or ("tenant",)


def check_since(seconds: float) -> float:
    if not 0 < seconds <= MAX_SINCE_S:
        raise InvalidInput(f"since must be above 0 and at most {MAX_SINCE_S // 86400} days (the buckets' retention)")
    return seconds


def hours(since_s: float, now: float) -> range:
    """The hour ids covering the last `since_s` seconds up to `now`, oldest first (whole hours: a bucket is
    counted if any part of it falls in the range)."""
    last = int(now // 3600)
    return range(int((now - since_s) // 3600), last + 1)


def parse_field(hour: int, name: str | bytes, amount: str | bytes) -> Entry | None:
    parts = text(name).split(keys.USAGE_FIELD_SEP)
    if len(parts) != 4:
        return None  # not ours: skipped, never a failure
    try:
        value = float(amount)
    except ValueError:
        return None
    return Entry(hour, parts[0], parts[1], parts[2], parts[3], value)


def entries(connection: Redis, hour_ids: Sequence[int], tenant: str | None = None) -> list[Entry]:
    """Every field of the given hour buckets (one tenant's only, when given)."""
    out: list[Entry] = []
    for start in range(0, len(hour_ids), HOURS_PER_PIPELINE):
        chunk = hour_ids[start : start + HOURS_PER_PIPELINE]
        with connection.pipeline(transaction=False) as pipe:
            for hour in chunk:
                pipe.hgetall(keys.usage_hour(hour))
            replies = pipe.execute()
        for hour, fields in zip(chunk, replies, strict=True):
            for name, amount in fields.items():
                entry = parse_field(hour, name, amount)
                if entry is not None and (tenant is None or entry.tenant == tenant):
                    out.append(entry)
    return out


def group_of(entry: Entry, by: Sequence[str]) -> tuple[str, ...]:
    return tuple(getattr(entry, name) for name in by)


def totals(
    connection: Redis,
    since_s: float,
    *,
    by: Sequence[str] = ("tenant",),
    tenant: str | None = None,
    now: float | None = None,
) -> list[dict]:
    """One row per group: {"tenant": ..., ("task", "key" as grouped), "usage": {unit: amount}}, sorted by
    usd then tokens, most first. Units nobody used are left out of a row."""
    now = time.time() if now is None else now
    by = check_by(by)
    sums: dict[tuple[str, ...], dict[str, float]] = {}
    for entry in entries(connection, list(hours(check_since(since_s), now)), tenant):
        units = sums.setdefault(group_of(entry, by), {})
        units[entry.unit] = units.get(entry.unit, 0.0) + entry.amount
    ranked = sorted(sums.items(), key=lambda i: (-i[1].get("usd", 0.0), -i[1].get("tokens", 0.0), i[0]))
    return [{**dict(zip(by, group, strict=True)), "usage": ordered(units)} for group, units in ranked]


def series(
    connection: Redis,
    since_s: float,
    *,
    unit: str = "usd",
    by: str = "tenant",
    tenant: str | None = None,
    now: float | None = None,
) -> dict:
    """Per hour, `unit` used by each tenant (or limit key, or task): {"hours": [hour ids, oldest first],
    "series": {name: [amount per hour]}} — what the Usage page charts."""
    now = time.time() if now is None else now
    (group,) = check_by(by)
    hour_ids = list(hours(check_since(since_s), now))
    index = {h: i for i, h in enumerate(hour_ids)}
    out: dict[str, list[float]] = {}
    for entry in entries(connection, hour_ids, tenant):
        if entry.unit == unit:
            values = out.setdefault(getattr(entry, group) or "(none)", [0.0] * len(hour_ids))
            values[index[entry.hour]] += entry.amount
    return {"hours": hour_ids, "unit": unit, "by": group, "series": dict(sorted(out.items()))}


def ordered(units: Mapping[str, float]) -> dict[str, float]:
    known = [u for u in UNITS if u in units]
    return {u: round(units[u], 6) for u in [*known, *sorted(set(units) - set(known))]}


def tenant_period_usage(connection: Redis, tenant: str, now: float | None = None) -> dict[str, dict[str, float]]:
    """{"d": {unit: amount}, "month": {unit: amount}}: the tenant's totals in the current UTC day and month
    (two HGETALLs of at most a few fields, one round trip)."""
    now = time.time() if now is None else now
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.usage_tenant_day(tenant, day_of(now)))
        pipe.hgetall(keys.usage_tenant_month(tenant, month_of(now)))
        day, month = pipe.execute()
    return {"d": as_amounts(day), "month": as_amounts(month)}


def as_amounts(raw: Mapping) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, amount in raw.items():
        try:
            out[text(name)] = float(amount)
        except ValueError:
            continue
    return out


def current_hour(connection: Redis, now: float | None = None) -> dict[str, float]:
    """Every tenant's usage in the current UTC hour, summed per unit (the /metrics gauge)."""
    now = time.time() if now is None else now
    sums: dict[str, float] = {}
    for entry in entries(connection, [int(now // 3600)]):
        sums[entry.unit] = sums.get(entry.unit, 0.0) + entry.amount
    return ordered(sums)
