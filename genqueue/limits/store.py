"""Limits in Redis: what `genqueue limits` sets, shows and removes (the scripts in lua/ enforce them)."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from ..backend import keys
from .rules import Rate, check_key, parse_rate

FIELDS = ("concurrency", "rate_n", "rate_period_ms")


def set_limits(connection: Redis, key: str, *, concurrency: int | None = None, rate: str | None = None) -> None:
    """Override a key's limits for every worker at once; 0 / "0/s" are not accepted — use clear()."""
    check_key(key)
    mapping: dict[str, int] = {}
    if concurrency is not None:
        mapping["concurrency"] = int(concurrency)
    if rate is not None:
        parsed = parse_rate(rate)
        mapping.update(rate_n=parsed.n, rate_period_ms=parsed.period_ms)
    with connection.pipeline() as pipe:
        pipe.sadd(keys.LIMITS_KNOWN, key)
        if mapping:
            pipe.hset(keys.limit_prefix(key) + "cfg", mapping=mapping)
        pipe.zadd(keys.LIMITS_WAKE, {key: 0})  # a raised limit wakes parked jobs at the next tick
        pipe.execute()


def clear(connection: Redis, key: str) -> bool:
    """Drop the Redis overrides (the task's declared limits apply again). False if there were none."""
    check_key(key)
    removed = connection.hdel(keys.limit_prefix(key) + "cfg", *FIELDS)
    connection.zadd(keys.LIMITS_WAKE, {key: 0})
    return bool(removed)


def _num(value: bytes | None) -> int:
    return int(value) if value not in (None, b"") else 0


def describe(connection: Redis, key: str | None = None) -> list[dict[str, Any]]:
    """One row per limit key: state, in flight / cap, rate, parked, counters."""
    names = [check_key(key)] if key else sorted(k.decode() for k in connection.smembers(keys.LIMITS_KNOWN))
    now = int(time.time() * 1000)
    rows = []
    for name in names:
        p = keys.limit_prefix(name)
        with connection.pipeline(transaction=False) as reads:
            reads.hgetall(p + "cfg")
            reads.zcount(p + "slots", now, "+inf")
            reads.zcount(p + "win", "-inf", "+inf")
            reads.pttl(p + "pause")
            reads.lrange(p + "ring", 0, -1)
            reads.hgetall(p + "stats")
            cfg, in_flight, window, pause, ring, stats = reads.execute()
        cfg = {k.decode(): v for k, v in cfg.items()}
        with connection.pipeline(transaction=False) as reads:
            for tenant in dict.fromkeys(ring):
                reads.llen(p + "parked:" + tenant.decode())
            parked = sum(reads.execute()) if ring else 0

        def pick(field: str) -> int:
            return _num(cfg.get(field)) or _num(cfg.get("declared_" + field))

        cap, n, period = pick("concurrency"), pick("rate_n"), pick("rate_period_ms")
        rows.append({
            "key": name,
            "state": "paused" if pause > 0 else "closed",
            "paused_for_s": round(pause / 1000, 3) if pause > 0 else None,
            "in_flight": in_flight, "concurrency": cap or None,
            "rate": str(Rate(n, period)) if n and period else None, "window_calls": window,
            "parked": parked,
            "overridden": any(f in cfg for f in FIELDS),
            "counters": {k.decode(): int(v) for k, v in stats.items()},
        })
    return rows
