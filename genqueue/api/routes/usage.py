"""/api/usage and /api/budgets: what tenants used, and their budgets. A tenant sees only its own — the usage
it asks for is its own whatever `tenant` it names, and another tenant's budget is 403; admins see all and are
the only ones who set or clear a budget (as `genqueue budgets set|clear`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ...backend import audit
from ...errors import NotFound
from ...support.durations import parse_duration
from ...tenants.tenancy import Principal, check_access
from ...usage.budget_store import all_budgets, clear_budget, describe, get_budget, set_budget
from ...usage.budgets import budget_from_body, check_tenant
from ...usage.store import GROUPS, check_by, totals
from ..deps import ServiceState, admin, principal, service
from . import actor

router = APIRouter(tags=["usage and budgets"])

CapValue = str | list[str] | None
CAP_HELP = "per UTC day or month: '50/d', '2M/month' (or a list of both)"


class BudgetBody(BaseModel):
    tokens: CapValue = Field(None, description=f"tokens (input + output) {CAP_HELP}")
    input_tokens: CapValue = Field(None, description=f"input tokens {CAP_HELP}")
    output_tokens: CapValue = Field(None, description=f"output tokens {CAP_HELP}")
    images: CapValue = Field(None, description=f"images {CAP_HELP}")
    usd: CapValue = Field(None, description=f"dollars {CAP_HELP}")
    when_spent: str = Field("refuse", description="refuse (402 at enqueue) or park (scheduled for the reset)")


@router.get("/api/usage", summary="Usage (tokens, images, usd) grouped by tenant, task and limit key")
def get_usage(
    tenant: str | None = Query(None, description="admins: one tenant's usage; a tenant always gets its own"),
    by: str = Query("tenant", description=f"group by any of {', '.join(GROUPS)}, comma-separated"),
    since: str = Query("24h", description="how far back (whole UTC hours): 1h, 24h, 7d; at most 35d"),
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> dict:
    groups = check_by(by)
    since_s = parse_duration(since).total_seconds()
    scope = tenant if who.is_admin else who.tenant  # forced to its own, whatever it asked
    if scope is not None:
        check_tenant(scope)
    rows = totals(state.connection, since_s, by=groups, tenant=scope)
    return {"data": rows, "by": list(groups), "since_s": since_s, "tenant": scope}


@router.get("/api/budgets", summary="Budgets with what was used this period (a tenant: its own only)")
def list_budgets(who: Principal = Depends(principal), state: ServiceState = Depends(service)) -> dict:
    found = all_budgets(state.connection)
    if not who.is_admin:
        found = {t: b for t, b in found.items() if t == who.tenant}
    return {"data": [describe(state.connection, t, b) for t, b in found.items()]}


@router.get("/api/budgets/{tenant}", summary="A tenant's budget (admins, or the tenant itself)")
def read_budget(tenant: str, who: Principal = Depends(principal), state: ServiceState = Depends(service)) -> dict:
    check_access(who, tenant, "this budget")  # its name is not echoed to another tenant
    budget = get_budget(state.connection, tenant)
    if budget is None:
        raise NotFound(f"tenant {tenant} has no budget")
    return {"data": describe(state.connection, tenant, budget)}


@router.put("/api/budgets/{tenant}", summary="Set a tenant's budget (admin; replaces the one it had)")
def put_budget(
    tenant: str,
    body: BudgetBody,
    request: Request,
    who: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    budget = budget_from_body(body.model_dump())
    set_budget(state.connection, tenant, budget)
    audit.record(
        state.connection,
        "tenant_budget",
        state.settings.queue,
        ids=[tenant],
        note=budget.to_json(),
        actor=actor(request, who),
    )
    return {"data": describe(state.connection, tenant, budget)}


@router.delete("/api/budgets/{tenant}", summary="Clear a tenant's budget (admin)")
def delete_budget(
    tenant: str, request: Request, who: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    clear_budget(state.connection, tenant)
    audit.record(state.connection, "tenant_budget_clear", state.settings.queue, ids=[tenant], actor=actor(request, who))
    return {"data": {"tenant": tenant, "cleared": True}}
