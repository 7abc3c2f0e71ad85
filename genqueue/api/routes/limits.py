"""/api/limits (admin only): the provider limit keys as `genqueue limits --json` shows them — state, in
flight / cap, rate, parked jobs, counters — over genqueue.limits.store.describe; and `POST
/api/limits/{key}/resume` (`genqueue limits resume`) and `PUT /api/limits/{key}` (`genqueue limits set`: concurrency,
rate, cooldown and the unit limits tokens, images, usd), both audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ...backend import audit
from ...limits.rules import Limits, check_key
from ...limits.store import describe, resume, set_limits
from ...support.secrets import mask
from ...tenants.tenancy import Principal
from ..deps import ServiceState, admin, service
from . import actor

router = APIRouter(prefix="/api/limits", tags=["limits (admin)"])


class LimitRow(BaseModel):
    # extra="allow": fields the limits store adds later reach the answer without a change here
    model_config = ConfigDict(extra="allow")

    key: str = Field(description="the limit key, e.g. openai:gpt-image-1")
    state: str = Field(
        description="closed (calls go through), paused (a 429's Retry-After), open (the breaker: "
        "calls held), half-open (one probe call out)"
    )
    paused_for_s: float | None = Field(None, description="seconds left while paused or open")
    in_flight: int = Field(description="jobs of this key holding a concurrency slot now")
    concurrency: int | None = Field(None, description="the cap (override, else declared); null: none")
    rate: str | None = Field(None, description="calls per period, e.g. 5/s; null: none")
    window_calls: int = Field(description="calls in the rate's current window")
    units: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="unit limits (tokens, images, usd): {unit: {limit: '90k/m', used: settled in the window, "
        "reserved: running jobs' estimates}}",
    )
    parked: int = Field(description="jobs waiting off the queue for this key")
    overridden: bool = Field(description="set with `genqueue limits set` (wins over the task's declaration)")
    counters: dict[str, int] = Field(
        description="totals: throttled, paused, parked, woken, pauses, rate_limited, breaker_opens, probes"
    )
    rate_limited_1m: int | None = Field(None, description="429s answered in the last minute")


class LimitsPage(BaseModel):
    data: list[LimitRow]


@router.get(
    "", summary="Provider limit keys: state, in flight / cap, rate, parked, counters", response_model=LimitsPage
)
def list_limits(
    key: str | None = Query(None, description="only this key (an unknown key shows zeros)"),
    _: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    return {"data": mask(describe(state.connection, key))}


class Resumed(BaseModel):
    key: str
    paused_for_s: float | None = Field(None, description="what was left of the pause; null: none")
    breaker: str | None = Field(None, description="the breaker's state that was closed; null: it was closed")
    tenant_breakers: int = Field(0, description="tenants' own breakers closed")


@router.post(
    "/{key:path}/resume",
    summary="End a key's pause and open breakers now (its parked jobs wake); audited",
    response_model=dict[str, Resumed],
)
def resume_key(
    key: str, request: Request, who: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    done = resume(state.connection, key)
    audit.record(
        state.connection,
        "limits.resume",
        "",
        filters={"key": key},
        counts={k: v for k, v in done.items() if k != "key" and v},
        actor=actor(request, who),
    )
    return {"data": done}


class LimitsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, description="jobs of this key in flight at most")
    rate: str | None = Field(None, description="calls per period, e.g. 5/s, 300/m")
    cooldown: str | None = Field(None, description="the breaker's cooldown, e.g. 30s (0: no breaker)")
    tokens: str | None = Field(None, description="tokens per window, e.g. 90k/m")
    images: str | None = Field(None, description="images per window, e.g. 50/m")
    usd: str | None = Field(None, description="dollars per window, e.g. 200/d")


@router.put(
    "/{key:path}",
    summary="Set a key's limits for every worker (as `genqueue limits set`); audited",
    response_model=dict[str, LimitRow],
)
def set_key(
    key: str,
    body: LimitsUpdate,
    request: Request,
    who: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    from ...errors import InvalidInput
    from ...limits.rules import check_concurrency

    check_key(key)
    given = body.model_dump(exclude_none=True)
    if not given:
        raise InvalidInput("give concurrency, rate, cooldown, tokens, images and/or usd")
    units: dict[str, str] = {u: given[u] for u in ("tokens", "images", "usd") if u in given}
    parsed = Limits.parse({k: v for k, v in given.items() if k != "concurrency"})
    if body.concurrency is not None:
        check_concurrency(body.concurrency)
    set_limits(
        state.connection, key, concurrency=body.concurrency, rate=body.rate, cooldown_s=parsed.cooldown_s, units=units
    )
    filters = {"key": key, **{k: str(v) for k, v in given.items()}}
    audit.record(state.connection, "limits.set", "", filters=filters, counts={}, actor=actor(request, who))
    return {"data": mask(describe(state.connection, key)[0])}
