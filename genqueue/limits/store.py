"""Limits in Redis: what `genqueue limits` sets, shows and removes (the scripts in lua/ enforce them)."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from redis import Redis
from redis.typing import EncodableT, FieldT

from ..backend import keys
from ..backend.replies import text
from ..backend.scripts import registered
from ..errors import InvalidInput
from .rules import (
    DEFAULT_COOLDOWN_S,
    IDLE_TTL_S,
    UNITS,
    Rate,
    UnitLimit,
    check_concurrency,
    check_key,
    duration_s,
    parse_rate,
    parse_unit_limit,
)

FIELDS = (
    "concurrency",
    "rate_n",
    "rate_period_ms",
    "cooldown_ms",
    *(f"u_{unit}_{part}" for unit in UNITS for part in ("n", "ms")),
)
BUCKET_MS, BUCKETS = 10_000, 6  # limits.lua's health buckets: the last minute in six 10-s buckets


def set_limits(
    connection: Redis,
    key: str,
    *,
    concurrency: int | None = None,
    rate: str | None = None,
    cooldown_s: float | None = None,
    units: dict[str, str] | None = None,
) -> None:
    """Override a key's limits for every worker at once; 0 / "0/s" are not accepted — use clear().
    cooldown_s: how long the breaker keeps the key open after a failure storm (0: no breaker).
    units: {"tokens": "90k/m", "images": "50/m", "usd": "200/d"} (any of them)."""
    check_key(key)
    mapping: dict[FieldT, EncodableT] = {}
    if concurrency is not None:
        mapping["concurrency"] = check_concurrency(concurrency)
    if rate is not None:
        parsed = parse_rate(rate)
        mapping.update(rate_n=parsed.n, rate_period_ms=parsed.period_ms)
    if cooldown_s is not None:
        mapping["cooldown_ms"] = int((duration_s(cooldown_s, "cooldown", zero=True) or 0.0) * 1000)
    for unit, given in (units or {}).items():
        if unit not in UNITS:
            raise InvalidInput(f"unknown unit {unit!r}; use {', '.join(UNITS)}")
        limit = parse_unit_limit(given, unit)
        mapping[f"u_{unit}_n"], mapping[f"u_{unit}_ms"] = repr(limit.amount), limit.window_ms
    with connection.pipeline() as pipe:
        pipe.sadd(keys.LIMITS_KNOWN, key)
        if mapping:
            pipe.hset(keys.limit_prefix(key) + "cfg", mapping=mapping)
            pipe.persist(keys.limit_prefix(key) + "cfg")  # an overridden key never idles out
        pipe.zadd(keys.LIMITS_WAKE, {key: 0})  # a raised limit wakes parked jobs at the next tick
        pipe.execute()


def _script(name: str) -> str:
    return resources.files("genqueue.limits").joinpath("lua", name).read_text()


RESUME, FORGET = _script("resume.lua"), _script("forget.lua")
ADMIT, PRUNE = _script("known.lua") + _script("admit.lua"), _script("known.lua") + _script("prune.lua")


def check_new_key(connection: Redis, key: str, max_keys: int) -> None:
    """At enqueue: admit `key` (known already, or one more while fewer than `max_keys` distinct keys are
    known — idle keys whose state expired are pruned first), else InvalidInput. Atomic (admit.lua): two
    enqueues cannot both take the last place."""
    check_key(key)
    ok, count = registered(connection, ADMIT)(
        args=[
            keys.LIMITS_KNOWN,
            keys.LIMIT_PREFIX_HEAD,
            keys.LIMIT_PREFIX_TAIL,
            key,
            int(max_keys),
            int(time.time() * 1000),
            IDLE_TTL_S * 1000,
        ]
    )
    if not int(ok):
        raise InvalidInput(
            f"limit key {key} refused: {int(count)} distinct limit keys are in use, the most there may be "
            f"(GENQUEUE_MAX_LIMIT_KEYS={max_keys}); idle keys expire after {IDLE_TTL_S // 60} min"
        )


def known_keys(connection: Redis) -> list[str]:
    """The known keys, those whose state expired pruned first (so what metrics show stays bounded)."""
    registered(connection, PRUNE)(args=[keys.LIMITS_KNOWN, keys.LIMIT_PREFIX_HEAD, keys.LIMIT_PREFIX_TAIL])
    return sorted(text(k) for k in connection.smembers(keys.LIMITS_KNOWN))


def resume(connection: Redis, key: str) -> dict[str, Any]:
    """End the key's pause and open breakers (its own and its tenants') now, atomically; its parked jobs
    wake at the next tick. Says what there was: {"key", "paused_for_s", "breaker", "tenant_breakers"}."""
    check_key(key)
    pause, state, tenants = registered(connection, RESUME)(
        args=[keys.limit_prefix(key), keys.LIMITS_WAKE, key, int(time.time() * 1000)]
    )
    return {
        "key": key,
        "paused_for_s": round(int(pause) / 1000, 3) if int(pause) > 0 else None,
        "breaker": (state.decode() if isinstance(state, bytes) else str(state)) or None,
        "tenant_breakers": int(tenants),
    }


def clear(connection: Redis, key: str) -> dict[str, Any]:
    """`genqueue limits rm`: drop the overrides (the task's declared limits apply again), the pause, the
    breakers, the learned rate and the counters; the key itself when nothing of it is in flight or parked.
    Says what there was and what was left: {"key", "overrides", "paused_for_s", "breaker", "in_flight",
    "parked", "forgotten"} — `forgotten` False when in-flight or parked jobs keep the key."""
    check_key(key)
    known = bool(connection.sismember(keys.LIMITS_KNOWN, key))
    overrides, pause, state, in_flight, parked = registered(connection, FORGET)(
        args=[keys.limit_prefix(key), keys.LIMITS_WAKE, keys.LIMITS_KNOWN, key, int(time.time() * 1000)]
    )
    return {
        "key": key,
        "known": known,
        "overrides": bool(overrides),
        "paused_for_s": round(int(pause) / 1000, 3) if int(pause) > 0 else None,
        "breaker": (state.decode() if isinstance(state, bytes) else str(state)) or None,
        "in_flight": int(in_flight),
        "parked": int(parked),
        "forgotten": not in_flight and not parked,
    }


def unit_limits(connection: Redis, names: list[str]) -> dict[str, dict[str, UnitLimit]]:
    """Each key's unit limits as the workers see them (set with `genqueue limits set`, else as last declared
    by a claim): one round trip for all the keys."""
    with connection.pipeline(transaction=False) as reads:
        for name in names:
            reads.hgetall(keys.limit_prefix(name) + "cfg")
        replies = reads.execute() if names else []
    out: dict[str, dict[str, UnitLimit]] = {}
    for name, raw in zip(names, replies, strict=True):
        cfg = {text(k): v for k, v in raw.items()}
        out[name] = {unit: parse_unit_limit(u["limit"], unit) for unit, u in _units(cfg, {}).items()}
    return out


def _set_or_declared(cfg: dict[str, bytes], field: str) -> int:
    """A limit field as set at run time, else as the task declared it (0: neither)."""
    return _num(cfg.get(field)) or _num(cfg.get("declared_" + field))


def _num(value: bytes | None) -> int:
    return int(value) if value not in (None, b"") else 0


READS = 11  # per key, in describe()'s first pipeline


def _units(cfg: dict[str, bytes], totals: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """The key's unit limits (set, else declared): {unit: {"limit": "90k/m", "window_ms", "reserved": r,
    "used": w}} (`used` as the totals say; describe() counts it afresh from the window)."""
    out: dict[str, dict[str, Any]] = {}
    for unit in UNITS:
        n, ms = cfg.get(f"u_{unit}_n"), cfg.get(f"u_{unit}_ms")
        if not n or float(n) <= 0:
            n, ms = cfg.get(f"declared_u_{unit}_n"), cfg.get(f"declared_u_{unit}_ms")
        if not n or float(n) <= 0 or not ms or int(ms) <= 0:
            continue
        out[unit] = {
            "limit": str(UnitLimit(float(n), int(ms))),
            "window_ms": int(ms),
            "reserved": round(float(totals.get(f"r:{unit}".encode(), 0) or 0), 6),
            "used": round(float(totals.get(f"w:{unit}".encode(), 0) or 0), 6),
        }
    return out


def describe(connection: Redis, key: str | None = None) -> list[dict[str, Any]]:
    """One row per limit key: state, in flight / cap, rate, parked, counters. Three round trips whatever
    the number of keys (names, every key's state, its parked lists' lengths): metrics scrape it."""
    names = [check_key(key)] if key else known_keys(connection)
    now = int(time.time() * 1000)
    with connection.pipeline(transaction=False) as reads:
        for name in names:
            p = keys.limit_prefix(name)
            reads.hgetall(p + "cfg")
            reads.zcount(p + "slots", now, "+inf")
            reads.zcount(p + "win", "-inf", "+inf")
            reads.pttl(p + "pause")
            reads.lrange(p + "ring", 0, -1)
            reads.hgetall(p + "stats")
            reads.hgetall(p + "brk")
            reads.hgetall(p + "health")
            reads.hmget(p + "learned", "n", "period")
            reads.hvals(p + "tbrk")
            reads.hgetall(p + "ut")
        replies = reads.execute() if names else []
    per_key = [replies[READS * i : READS * i + READS] for i in range(len(names))]
    with connection.pipeline(transaction=False) as reads:
        lengths, unit_rows = [], []
        for name, (cfg, *_, ring, _stats, _brk, _health, _learned, _tbrk, ut) in zip(names, per_key, strict=False):
            tenants = list(dict.fromkeys(ring))
            lengths.append(len(tenants))
            for tenant in tenants:
                reads.llen(keys.limit_prefix(name) + "parked:" + tenant.decode())
            units = _units({text(k): v for k, v in cfg.items()}, ut)
            unit_rows.append(units)
            for unit, u in units.items():  # what was settled within the window, as of now
                reads.zrangebyscore(keys.limit_prefix(name) + "uw:" + unit, now - u["window_ms"], "+inf")
        replies = reads.execute() if any(lengths) or any(unit_rows) else []
        parked_lists = iter(replies)
    rows = []
    for name, reply, count, units in zip(names, per_key, lengths, unit_rows, strict=False):
        cfg, in_flight, window, pause, _ring, stats, brk, health, learned, tbrk, _totals = reply
        parked = sum(next(parked_lists) for _ in range(count))
        for u in units.values():
            u["used"] = round(sum(float(text(m).rsplit("|", 1)[1]) for m in next(parked_lists)), 6)
            del u["window_ms"]
        cfg = {k.decode(): v for k, v in cfg.items()}
        cap, n, period = (_set_or_declared(cfg, f) for f in ("concurrency", "rate_n", "rate_period_ms"))
        rate_learned = not n and learned[0] is not None
        if rate_learned:  # nothing set or declared: the rate limits.lua learned from the provider's 429s
            n, period = _num(learned[0]), _num(learned[1])
        state, wait_ms = breaker_state({k.decode(): v.decode() for k, v in brk.items()}, pause, now)
        cooldown = cfg.get("cooldown_ms", cfg.get("declared_cooldown_ms"))
        rows.append(
            {
                "key": name,
                "state": state,
                "paused_for_s": round(wait_ms / 1000, 3) if wait_ms > 0 else None,
                "cooldown_s": _num(cooldown) / 1000 if cooldown is not None else DEFAULT_COOLDOWN_S,
                "rate_limited_1m": last_minute(health, now).get("r", 0),
                "tenant_breakers_open": sum(1 for until in tbrk if int(until) > now),
                "in_flight": in_flight,
                "concurrency": cap or None,
                "rate": str(Rate(n, period)) if n and period else None,
                "rate_learned": rate_learned,
                "window_calls": window,
                "units": units,
                "parked": parked,
                "overridden": any(f in cfg for f in FIELDS),
                "counters": {k.decode(): int(v) for k, v in stats.items()},
            }
        )
    return rows


def breaker_state(brk: dict[str, str], pause_ms: int, now_ms: int) -> tuple[str, int]:
    """(state, ms it lasts): `open` (the breaker's cooldown), `half-open` (past it: one probe may go, or is
    out), `paused` (a 429's Retry-After), `closed`. An open breaker outranks a pause: it is the longer story."""
    if brk.get("state") == "open" and int(brk.get("until", 0)) > now_ms:
        return "open", int(brk["until"]) - now_ms
    if brk.get("state"):
        return "half-open", 0
    if pause_ms > 0:
        return "paused", pause_ms
    return "closed", 0


def last_minute(health: dict[bytes, bytes], now_ms: int) -> dict[str, int]:
    """The health buckets of the last minute summed: c (calls answered), f (failed), r (429s)."""
    current = now_ms // BUCKET_MS
    out = {"c": 0, "f": 0, "r": 0}
    for i in range(BUCKETS):
        bucket = health.get(f"b{i}".encode())
        if bucket is not None and int(bucket) > current - BUCKETS:
            for field in out:
                out[field] += _num(health.get(f"{field}{i}".encode()))
    return out
