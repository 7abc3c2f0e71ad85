"""/api/jobs: enqueue, status, manual retry — over `jobs.enqueue.enqueue_call`, `jobs.status.job_status` and
`jobs.manual_retry.retry_job`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from ...backend import audit
from ...errors import Conflict, Forbidden, InvalidInput, NotFound
from ...jobs.bulk_cancel import CancelFilter, bulk_cancel, count_matching
from ...jobs.cancel import CancelOutcome, cancel_job
from ...jobs.enqueue import (
    EnqueueResult,
    catalogue_for,
    check_job_id,
    declared_webhook,
    enqueue_call,
    generate_call,
    task_call,
)
from ...jobs.manual_retry import retry_job
from ...jobs.status import job_status, without_tracebacks
from ...runs.rules import run_key, run_of_item
from ...tasks.catalogue import CatalogueTask
from ...tasks.catalogue import read as read_catalogue
from ...tasks.registry import TaskSpec, lookup, registered, resolve_name
from ...tenants.tenancy import Principal, check_access
from ..deps import ServiceState, admin, principal, service
from . import actor, principal_name

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class EnqueueBody(BaseModel):
    payload: dict[str, Any] | None = Field(
        None, description="the built-in generate task's payload: prompt (required), model, params, user_id, …"
    )
    task: str | None = Field(None, description="a registered task open to the API (instead of payload)")
    kwargs: dict[str, Any] | None = Field(None, description="the task's keyword arguments")
    job_id: str | None = Field(None, description="idempotency key: a second enqueue returns the existing job")
    resend: bool = Field(
        False,
        description="with job_id: this is the same enqueue sent again (after a 503): a job holding the id in any "
        "state, finished included, is returned, never run again",
    )
    max_retries: int | None = Field(None, ge=0, le=100, description="this job's automatic retry budget")
    delay_s: float | None = Field(None, ge=0, le=30 * 86400, description="run no earlier than this from now")
    check: bool = Field(
        True, description="false (admins): enqueue a task that neither the API nor a live worker knows yet"
    )
    priority: Literal["high", "normal", "low"] | None = Field(
        None, description="its place among the queue's jobs (default: the task's, else normal)"
    )
    webhook: str | None = Field(
        None,
        max_length=2000,
        description="a URL called back, signed (Standard Webhooks), on the job's events: https and a public host, "
        "or a host listed in GENQUEUE_WEBHOOK_ALLOW (default: the task's declared webhook)",
    )
    webhook_events: list[str] | None = Field(
        None, max_length=20, description="the events sent (default: finished, dead_lettered, canceled)"
    )


def open_to_api(state: ServiceState, who: Principal, name: str, catalogue) -> None:
    """Non-admins may enqueue only the tasks a deployment opens to the API: declared with api=True (in the
    modules GENQUEUE_TASKS names, imported by `genqueue api`, or as the live workers published them) or
    listed in GENQUEUE_API_TASKS. Any other name is 404, as if it did not exist."""
    if who.is_admin:
        return
    spec = lookup(name) or (catalogue or {}).get(resolve_name(name))
    if resolve_name(name) in {resolve_name(n) for n in state.settings.api_tasks} or (spec is not None and spec.api):
        return
    raise NotFound(f"no task {name!r} is open to the API")


def visible_status(state: ServiceState, who: Principal, job_id: str) -> dict[str, Any]:
    info = job_status(state.connection, state.store(), check_job_id(job_id))
    check_access(who, info.get("tenant"), f"job {job_id}")
    return shown_to(who, info)


def shown_to(who: Principal, info: dict[str, Any]) -> dict[str, Any]:
    return info if who.is_admin else without_tracebacks(info)  # tracebacks are internals: admins only


@router.post("", status_code=201, summary="Enqueue a generation job (201 created, 200 existing)")
def create_job(
    body: EnqueueBody,
    request: Request,
    response: Response,
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> dict:
    result, info = enqueue_and_audit(state, who, body, actor(request, who))
    if not result.created:
        response.status_code = 200
    return {"data": info}


def enqueue_and_audit(state: ServiceState, who: Principal, body: EnqueueBody, by: str) -> tuple[EnqueueResult, dict]:
    """Enqueue `body` for `who` (as its tenant; admins as theirs, unchecked) and write the `api_enqueue`
    audit record when a job was created: the API's route and the dashboard's New job form (ui/routes.py).
    Returns the enqueue's result and the job's status as `who` may see it."""
    delay = timedelta(seconds=body.delay_s) if body.delay_s else None
    if (body.task is None) == (body.payload is None):
        raise InvalidInput("give either payload (the built-in generate task) or task with kwargs")
    if not body.check and not who.is_admin:
        raise Forbidden("check=false (enqueue a task no live worker knows) needs the admin role")
    spec: TaskSpec | CatalogueTask | None = None
    if body.payload is not None:
        call = generate_call(body.payload)
    elif body.task is not None:
        catalogue = catalogue_for(state.connection, body.task, body.check)
        open_to_api(state, who, body.task, catalogue)
        call, spec = task_call(body.task, body.kwargs or {}, catalogue)
    declared = spec is not None and not spec.positional  # its declared options apply, as from the CLI
    options = spec if declared else None
    result = enqueue_call(
        state.connection,
        state.settings.queue,
        call,
        job_id=body.job_id,
        max_retries=body.max_retries if body.max_retries is not None or options is None else options.max_retries,
        in_=delay,
        timeout=options.timeout if options is not None else None,
        policy=dict(options.policy) if options is not None and options.policy else None,
        tenant=who.tenant,
        as_tenant=None if who.is_admin else who.tenant,
        priority=body.priority or (spec.priority if body.task is not None and (spec := lookup(body.task)) else None),
        resend=body.resend and body.job_id is not None,
        **declared_webhook(spec, body.webhook, body.webhook_events),
    )
    info = visible_status(state, who, result.job.id)  # an existing id of another tenant is 403, not its data
    if result.created:
        audit.record(state.connection, "api_enqueue", state.settings.queue, ids=[result.job.id], actor=by)
    return result, info


def api_task_names(state: ServiceState, who: Principal) -> list[str]:
    """The tasks besides the built-in generate that `who` may enqueue by name: declared here or published
    by the live workers, open to the API (open_to_api); admins see them all. The dashboard's New job form."""
    catalogue = read_catalogue(state.connection)
    names = {s.name for s in registered() if not s.positional} | set(catalogue)
    shown = []
    for name in sorted(names):
        try:
            open_to_api(state, who, name, catalogue)
        except NotFound:
            continue
        shown.append(name)
    return shown


@router.get("/{job_id}", summary="A job's status, attempts and retry history")
async def get_job(job_id: str, who: Principal = Depends(principal), state: ServiceState = Depends(service)) -> dict:
    # async: the hot read path; its Redis reads are short and a threadpool hop costs more (deps.principal)
    return {"data": visible_status(state, who, job_id)}


class CancelBody(BaseModel):
    reason: str | None = Field(None, max_length=500, description="why, kept in the job's history")


BULK_CANCEL_MAX = 1000  # jobs one filtered cancel call handles; the returned cursor resumes


class BulkCancelBody(BaseModel):
    task: str | None = Field(None, description="filter: jobs of this task")
    tenant: str | None = Field(None, description="filter: jobs of this tenant")
    limit_key: str | None = Field(None, description="filter: jobs under this limit key")
    reason: str | None = Field(None, max_length=500, description="why, kept in each job's history")
    dry_run: bool = False
    cursor: str | None = Field(None, description="resume after this cursor (from the previous call)")
    limit: int = Field(BULK_CANCEL_MAX, ge=1, le=BULK_CANCEL_MAX, description="jobs this call handles at most")


@router.post("/cancel", summary="Cancel every live job matching filters (admins); dry_run; resumable by cursor")
def bulk_cancel_route(
    body: BulkCancelBody, request: Request, who: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    """Queued, scheduled, parked and running jobs of the queue matching task, tenant and/or limit_key, each by
    the one-job cancel move. `dry_run`: the count by place, nothing changed. Otherwise at most `limit` jobs;
    `next_cursor` (when not null) resumes, and calling again without it is as safe."""
    f = CancelFilter(state.settings.queue, body.task, body.tenant, body.limit_key).check()
    if body.dry_run:
        counts = count_matching(state.connection, f, body.cursor)
        return {"data": {"dry_run": True, "matching": sum(counts.values()), "by_place": counts}}
    result = bulk_cancel(
        state.connection,
        state.store(),
        f,
        cursor=body.cursor,
        by=principal_name(who),
        reason=body.reason,
        limit=body.limit,
    )
    audit.record(
        state.connection,
        "api_bulk_cancel",
        f.queue,
        filters=f.as_dict(),
        counts=result.counts,
        ids=result.ids,
        actor=actor(request, who),
    )
    return {
        "data": {
            **result.counts,
            "ids": result.ids[:BULK_CANCEL_MAX],
            "next_cursor": result.cursor if result.more else None,
        }
    }


@router.post("/{job_id}/cancel", summary="Cancel a job: queued, scheduled or parked at once; running: stopped")
def cancel(
    job_id: str,
    request: Request,
    body: CancelBody | None = None,
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> dict:
    """200 with `status: canceled` (`stopping: true` when it was running: its worker stops it within
    GENQUEUE_CANCEL_GRACE; it can no longer finish otherwise); 409 when it had already finished. Idempotent."""
    reason = body.reason if body is not None else None
    return {"data": cancel_and_audit(state, who, job_id, actor(request, who), reason).as_dict()}


def cancel_and_audit(
    state: ServiceState, who: Principal, job_id: str, by: str, reason: str | None = None
) -> CancelOutcome:
    """Cancel `job_id` for `who` (a tenant its own jobs, admins any) and write the `api_job_cancel` audit
    record (not for a repeated cancel): the API's route and the dashboard's Cancel button (ui/routes.py)."""
    visible_status(state, who, job_id)
    outcome = cancel_job(state.connection, state.store(), job_id, by=principal_name(who), reason=reason)
    if not outcome.already:
        audit.record(
            state.connection,
            "api_job_cancel",
            outcome.queue,
            ids=[job_id],
            actor=by,
            note=f"was {outcome.previous_status}" + (f": {reason}" if reason else ""),
        )
    return outcome


@router.post("/{job_id}/retry", summary="Retry a failed or dead-lettered job with a fresh budget")
def retry(
    job_id: str,
    request: Request,
    force: bool = False,
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> dict:
    visible_status(state, who, job_id)
    if force and not who.is_admin:
        raise Forbidden("force needs the admin role")
    run_id = run_of_item(job_id)
    if run_id is not None and not who.is_admin and state.connection.exists(run_key(run_id)):
        # A run's items are retried by the run's rules (credits, the `never` class), not one by one.
        raise Conflict(
            f"job {job_id} is an item of run {run_id}: retry it with POST /api/runs/{run_id}/"
            "retry-failed (Continue), which applies the run's credits and retry rules"
        )
    outcome = retry_job(state.connection, state.store(), job_id, force=force, by=principal_name(who))
    audit.record(
        state.connection,
        "api_job_retry",
        state.settings.queue,
        ids=[job_id],
        actor=actor(request, who),
        counts={"charged": int(outcome.charged)},
    )
    return {"data": shown_to(who, job_status(state.connection, state.store(), job_id))}
