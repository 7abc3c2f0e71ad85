"""Budgets in Redis: `genqueue budgets set|show|clear` and /api/budgets write and read one hash (tenant ->
the budget's JSON, keys.BUDGETS), and `admit` is the check every enqueue of a tenant's new job makes.

`admit` is one pipelined round trip of O(1) reads — the tenant's budget (HGET) and its current day and month
totals (two HGETALLs of a few fields) — and the pure `budgets.check`. A reached cap is logged once and counted
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
    return budget


def get_budget(connection: Redis, tenant: str) -> Budget | None:
    raw = connection.hget(keys.BUDGETS, check_tenant(tenant))
    return None if raw is None else Budget.from_json(raw)


def all_budgets(connection: Redis) -> dict[str, Budget]:
    return {text(t): Budget.from_json(raw) for t, raw in sorted(connection.hgetall(keys.BUDGETS).items())}


def clear_budget(connection: Redis, tenant: str) -> None:
    """NotFound when the tenant has no budget."""
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
    it is spent and says `refuse`."""
    now = time.time() if now is None else now
    name = tenant or NO_TENANT
    with connection.pipeline(transaction=False) as pipe:
        pipe.hget(keys.BUDGETS, name)
        pipe.hgetall(keys.usage_tenant_day(name, day_of(now)))
        pipe.hgetall(keys.usage_tenant_month(name, month_of(now)))
        raw, day, month = pipe.execute()
    if raw is None:
        return None
    budget = Budget.from_json(raw)
    breach = check(budget, {"d": as_amounts(day), "month": as_amounts(month)}, now)
    if breach is None:
        return None
    _record(connection, name, budget, breach, now)
    if budget.when_spent == "park":
        return breach.resets_at
    raise refusal(name, breach)


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
