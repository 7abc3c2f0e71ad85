"""Budgets in Redis: `genqueue budgets set|show|clear` and /api/budgets write and read one hash (tenant ->
the budget's JSON, keys.BUDGETS), and `admit` is the check every enqueue of a tenant's new job makes.

`admit` costs a tenant without a budget nothing (the budgets are cached per process for at most a second)
and one with a budget one round trip of O(1) reads — its current day and month totals (two HGETALLs of a few
fields) — and the pure `budgets.check`. A reached cap is logged once and counted
once per tenant, unit and period (the first enqueue to see it sets a marker with SET NX), and every job it
refuses or parks is counted (keys.BUDGET_BREACHES, exported by /metrics).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from redis import Redis

from ..backend import keys
from ..backend.replies import text
from ..errors import BudgetSpent, NotFound
from ..support.logs import get_logger
from .budgets import NO_TENANT, Breach, Budget, check, check_tenant, day_of, month_of, period_id, refusal
from .store import as_amounts, tenant_period_usage

log = get_logger("genqueue.budgets")
MARKER_MARGIN_S = 3600  # a breach marker outlives its period by this: no second log line at the boundary


def set_budget(connection: Redis, tenant: str, budget: Budget) -> Budget:
    """Replace the tenant's budget ("*": the jobs with no tenant); it applies from the next enqueue."""
    connection.hset(keys.BUDGETS, check_tenant(tenant), budget.to_json())
    _cache.clear()
    return budget


def get_budget(connection: Redis, tenant: str) -> Budget | None:
    raw = connection.hget(keys.BUDGETS, check_tenant(tenant))
    return None if raw is None else Budget.from_json(raw)


def all_budgets(connection: Redis) -> dict[str, Budget]:
    return {text(t): Budget.from_json(raw) for t, raw in sorted(connection.hgetall(keys.BUDGETS).items())}


def clear_budget(connection: Redis, tenant: str) -> None:
    """NotFound when the tenant has no budget."""
    _cache.clear()
    if not connection.hdel(keys.BUDGETS, check_tenant(tenant)):
        raise NotFound(f"tenant {tenant} has no budget")


def describe(connection: Redis, tenant: str, budget: Budget, now: float | None = None) -> dict:
    """The budget with what was used against each cap in the current period: `budgets show`, the API, the page."""
    now = time.time() if now is None else now
    used = tenant_period_usage(connection, tenant, now)
    breach = check(budget, used, now)
    return {
        "tenant": tenant,
        "when_spent": budget.when_spent,
        "spent": breach is not None,
        "resets_at": breach.resets_at if breach else None,
        "caps": [
            {
                "unit": c.unit,
                "period": c.period,
                "limit": c.amount,
                "used": round(used.get(c.period, {}).get(c.unit, 0.0), 6),
                "period_id": period_id(c.period, now),
            }
            for c in budget.caps
        ],
    }


def admit(connection: Redis, tenant: str | None, now: float | None = None) -> float | None:
    """The budget check of one new job of `tenant` (None: the jobs with no tenant, "*"). None: enqueue it now;
    a unix time: park it until then (its budget is spent and says `park`). Raises BudgetSpent (402) when
    it is spent and says `refuse`.

    A tenant without a budget costs no round trip: the budgets are read whole (one small hash, admins
    write it) at most once per BUDGETS_CACHE_S per process and connection pool; `set_budget` and
    `clear_budget` drop this process's copy, so a change made elsewhere applies within that time. A tenant
    with a budget costs one round trip: its current day and month totals, always read fresh."""
    now = time.time() if now is None else now
    name = tenant or NO_TENANT
    budget = budgets_now(connection).get(name)
    if budget is None:
        return None
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.usage_tenant_day(name, day_of(now)))
        pipe.hgetall(keys.usage_tenant_month(name, month_of(now)))
        day, month = pipe.execute()
    breach = check(budget, {"d": as_amounts(day), "month": as_amounts(month)}, now)
    if breach is None:
        return None
    _record(connection, name, budget, breach, now)
    if budget.when_spent == "park":
        return breach.resets_at
    raise refusal(name, breach)


BUDGETS_CACHE_S = 1.0
_cache: dict[int, tuple[float, dict[str, Budget]]] = {}  # id(connection pool) -> (read at, budgets)


def budgets_now(connection: Redis) -> dict[str, Budget]:
    """Every budget, as read at most BUDGETS_CACHE_S ago by this process over this connection pool."""
    pool = id(connection.connection_pool)
    read_at, found = _cache.get(pool, (0.0, {}))
    if time.monotonic() - read_at < BUDGETS_CACHE_S:
        return found
    found = all_budgets(connection)
    _cache[pool] = (time.monotonic(), found)
    return found


def _record(connection: Redis, tenant: str, budget: Budget, breach: Breach, now: float) -> None:
    """Count the job refused or parked; log and count each reached cap once per period."""
    ttl = int(breach.resets_at - now) + MARKER_MARGIN_S
    with connection.pipeline(transaction=False) as pipe:
        for cap in breach.caps:
            pipe.set(keys.budget_breach(tenant, cap.unit, cap.period, period_id(cap.period, now)), 1, nx=True, ex=ttl)
        pipe.hincrby(keys.BUDGET_BREACHES, "parked" if budget.when_spent == "park" else "refused", 1)
        first = pipe.execute()[: len(breach.caps)]
    new = [cap for cap, fresh in zip(breach.caps, first, strict=True) if fresh]
    if not new:
        return
    with connection.pipeline(transaction=False) as pipe:
        for cap in new:
            pipe.hincrby(keys.BUDGET_BREACHES, f"{cap.unit}:{cap.period}", 1)
        pipe.execute()
    log.warning(
        "budget.spent",
        tenant=tenant,
        caps=[str(c) + f" {c.unit}" for c in new],
        used=breach.describe(),
        when_spent=budget.when_spent,
        resets_at=breach.resets_at,
    )


def breach_counts(connection: Redis) -> dict[str, int]:
    """keys.BUDGET_BREACHES: {"usd:d": breaches, ..., "refused": jobs, "parked": jobs}."""
    return {text(k): int(v) for k, v in connection.hgetall(keys.BUDGET_BREACHES).items()}


def refuse_batch(connection: Redis, tenant: str | None, what: str) -> None:
    """The check of a batch (a run, enqueue_many): refused (BudgetSpent) while the tenant's budget is spent,
    whichever its choice — a batch is not parked job by job."""
    resets = admit(connection, tenant)
    if resets is not None:
        name = tenant or NO_TENANT
        raise BudgetSpent(
            f"tenant {name}'s budget is spent and {what} is not parked job by job; submit it after "
            f"{datetime.fromtimestamp(resets, UTC):%Y-%m-%d %H:%M} UTC; nothing was enqueued",
            resets,
        )
