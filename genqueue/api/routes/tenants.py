"""/api/tenants (admin only): each tenant's weight in the fair pop and its jobs waiting at the service's
queue, as `genqueue tenants show --json`; PUT sets a weight, as `genqueue tenants set`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ...backend import audit
from ...tenants.fair import waiting, waiting_by_tenant
from ...tenants.fairness import MAX_WEIGHT, NO_TENANT
from ...tenants.tenancy import Principal
from ...tenants.weights import set_weight, weights
from ..deps import ServiceState, admin, service
from . import actor

router = APIRouter(prefix="/api/tenants", tags=["tenants (admin)"])


class WeightBody(BaseModel):
    weight: int = Field(ge=1, le=MAX_WEIGHT, description="jobs the tenant takes per turn at each queue (default 1)")


@router.get("", summary="Tenants' weights and waiting jobs at the service's queue")
def list_tenants(_: Principal = Depends(admin), state: ServiceState = Depends(service)) -> dict:
    queue = state.settings.queue
    given = weights(state.connection)
    lanes = {(t or NO_TENANT): n for t, n in waiting_by_tenant(state.connection, queue).items()}
    rows = [{"tenant": t, "weight": given.get(t, 1), "waiting": lanes.get(t, 0)} for t in sorted({*given, *lanes})]
    return {"data": rows, "queue": queue, "waiting": waiting(state.connection, [queue])[queue]}


@router.put("/{tenant}", summary=f"Set a tenant's weight ('{NO_TENANT}': the jobs with no tenant)")
def put_weight(
    tenant: str,
    body: WeightBody,
    request: Request,
    who: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    value = set_weight(state.connection, tenant, body.weight)
    audit.record(
        state.connection,
        "tenant_weight",
        state.settings.queue,
        ids=[tenant],
        note=f"weight {value}",
        actor=actor(request, who),
    )
    return {"data": {"tenant": tenant, "weight": value}}
