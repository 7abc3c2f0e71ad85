"""/api/jobs: enqueue, status, manual retry — over producer.enqueue, status.job_status, jobretry.retry_job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from ...backend import audit
from ...errors import Forbidden
from ...jobs.enqueue import check_job_id, enqueue
from ...jobs.manual_retry import retry_job
from ...jobs.status import job_status, without_tracebacks
from ...tenants.tenancy import Principal, check_access
from ..deps import ServiceState, principal, service
from . import actor

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class EnqueueBody(BaseModel):
    payload: dict[str, Any] = Field(description="prompt (required), model, params, user_id, …")
    job_id: str | None = Field(None, description="idempotency key: a second enqueue returns the existing job")
    max_retries: int | None = Field(None, ge=0, le=100, description="this job's automatic retry budget")
    delay_s: float | None = Field(None, ge=0, le=30 * 86400, description="run no earlier than this from now")


def visible_status(state: ServiceState, who: Principal, job_id: str) -> dict[str, Any]:
    info = job_status(state.connection, state.store(), check_job_id(job_id))
    check_access(who, info.get("tenant"), f"job {job_id}")
    return shown_to(who, info)


def shown_to(who: Principal, info: dict[str, Any]) -> dict[str, Any]:
    return info if who.is_admin else without_tracebacks(info)  # tracebacks are internals: admins only


@router.post("", status_code=201, summary="Enqueue a generation job (201 created, 200 existing)")
def create_job(body: EnqueueBody, request: Request, response: Response, who: Principal = Depends(principal),
               state: ServiceState = Depends(service)) -> dict:
    delay = timedelta(seconds=body.delay_s) if body.delay_s else None
    result = enqueue(state.connection, state.settings.queue, body.payload, job_id=body.job_id,
                     max_retries=body.max_retries, in_=delay, tenant=who.tenant)
    info = visible_status(state, who, result.job.id)  # an existing id of another tenant is 403, not its data
    if not result.created:
        response.status_code = 200
    else:
        audit.record(state.connection, "api_enqueue", state.settings.queue, ids=[result.job.id],
                     actor=actor(request, who))
    return {"data": info}


@router.get("/{job_id}", summary="A job's status, attempts and retry history")
async def get_job(job_id: str, who: Principal = Depends(principal), state: ServiceState = Depends(service)) -> dict:
    # async: the hot read path; its Redis reads are short and a threadpool hop costs more (deps.principal)
    return {"data": visible_status(state, who, job_id)}


@router.post("/{job_id}/retry", summary="Retry a failed or dead-lettered job with a fresh budget")
def retry(job_id: str, request: Request, force: bool = False, who: Principal = Depends(principal),
          state: ServiceState = Depends(service)) -> dict:
    visible_status(state, who, job_id)
    if force and not who.is_admin:
        raise Forbidden("force needs the admin role")
    outcome = retry_job(state.connection, state.store(), job_id, force=force)
    audit.record(state.connection, "api_job_retry", state.settings.queue, ids=[job_id], actor=actor(request, who),
                 counts={"charged": int(outcome.charged)})
    return {"data": shown_to(who, job_status(state.connection, state.store(), job_id))}
