"""/api/runs: submit a batch, read it, and "Continue" (retry-failed) — over genqueue.runs.store."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ...backend import audit
from ...errors import InvalidInput
from ...runs.cancel import cancel_run, run_tenant
from ...runs.rules import DEFAULT_LIMIT, check_run_id, parse_run_file
from ...runs.store import RetryFailedResult, retry_failed, snapshot, submit
from ...tenants.tenancy import Principal, check_access
from ..deps import ServiceState, principal, service
from . import actor, principal_name

router = APIRouter(prefix="/api/runs", tags=["runs"])
NDJSON = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
RUN_BODY = {
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "array", "items": {"type": "object"}},
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": {"type": "object"}},
                            "run_id": {"type": "string"},
                            "max_retry_count": {"type": "integer", "minimum": 1, "maximum": 10},
                            "priority": {"type": "string", "enum": ["high", "normal", "low"]},
                        },
                        "required": ["items"],
                    },
                ]
            }
        },
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON payload per line"}},
    },
    "required": True,
}


def parse_items(raw: bytes, content_type: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(payloads, options) from a JSON array, a JSON object {items, run_id?, max_retry_count?, priority?}, or
    JSONL."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8 text") from None
    if content_type.split(";")[0].strip().lower() in NDJSON:
        return parse_run_file(text.splitlines()), {}
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    except RecursionError:  # json's C parser gives up near Python's recursion limit
        raise InvalidInput("malformed JSON: nested too deeply") from None
    if isinstance(body, dict):
        options = {k: body[k] for k in ("run_id", "max_retry_count", "priority") if k in body}
        body = body.get("items")
    else:
        options = {}
    if not isinstance(body, list) or not body:
        raise InvalidInput("items must be a non-empty JSON array of payload objects")
    # One rule for files and HTTP bodies alike: parse_run_file checks each item (its depth too), naming its
    # line. json.dumps recurses: an item that parsed near the recursion limit may not serialise again.
    try:
        lines = [json.dumps(item) for item in body]
    except RecursionError:
        raise InvalidInput("an item nests objects and arrays too deeply") from None
    return parse_run_file(lines), options


def retry_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise InvalidInput("max_retry_count must be a whole number from 1 to 10")
    return value


def continue_and_audit(
    state: ServiceState, run_id: str, who: Principal, acted_by: str
) -> tuple[RetryFailedResult, list[str]]:
    """Continue a run (retry its failed items) for `who` and audit it: the API's route and the dashboard's
    button. Returns the result and the retried item ids, sorted."""
    result = retry_failed(
        state.connection,
        check_run_id(run_id),
        ttl_s=state.settings.dlq_retention_s,
        check_tenant_access=lambda tenant: check_access(who, tenant, f"run {run_id}"),
        by=principal_name(who),
    )
    retried = sorted(result.free + result.charged)
    counts = {
        "free": len(result.free),
        "charged": len(result.charged),
        "never": len(result.never),
        "credits": result.credits_debited,
    }
    audit.record(
        state.connection,
        "run_retry_failed",
        result.queue,
        ids=retried,
        note=f"run {run_id}",
        counts=counts,
        actor=acted_by,
    )
    return result, retried


@router.post(
    "",
    status_code=201,
    openapi_extra={"requestBody": RUN_BODY},
    summary="Submit a run: a JSON array of payloads, {items, run_id?, max_retry_count?, priority?}, or JSONL",
)
async def create_run(
    request: Request,
    response: Response,
    run_id: str | None = Query(None),
    max_retry_count: int | None = Query(None, ge=1, le=10),
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> dict:
    payloads, options = parse_items(await request.body(), request.headers.get("content-type", ""))
    run_id = options.get("run_id", run_id)
    limit = retry_limit(options.get("max_retry_count", max_retry_count))
    if run_id is not None:
        check_run_id(str(run_id))
    result = await run_in_threadpool(
        submit,
        state.connection,
        state.settings.queue,
        payloads,
        ttl_s=state.settings.dlq_retention_s,
        run_id=run_id,
        tenant=who.tenant,
        retry_limit=limit,
        priority=options.get("priority"),
    )
    if not result.created:
        response.status_code = 200
    audit.record(
        state.connection,
        "api_run_submit",
        state.settings.queue,
        note=f"run {result.run.run_id}",
        counts={"items": result.run.items, "enqueued": result.enqueued},
        actor=actor(request, who),
    )
    return {
        "data": {
            "run_id": result.run.run_id,
            "items": result.run.items,
            "created": result.created,
            "enqueued": result.enqueued,
            "max_retry_count": result.run.retry_limit,
        }
    }


@router.get("/{run_id}", summary="A run's status, counts, and failed items with their retry class")
def get_run(run_id: str, who: Principal = Depends(principal), state: ServiceState = Depends(service)) -> dict:
    snap = snapshot(state.connection, check_run_id(run_id), ttl_s=state.settings.dlq_retention_s)
    check_access(who, snap.run.tenant, f"run {run_id}")
    return {"data": snap.to_dict()}


@router.post(
    "/{run_id}/cancel",
    summary="Cancel every item of a run not yet finished",
    openapi_extra={"requestBody": None},
)
def cancel_run_route(
    run_id: str,
    request: Request,
    reason: str | None = Query(None, max_length=500),
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
    _body: None = Body(None, include_in_schema=False),
) -> dict:
    check_access(who, run_tenant(state.connection, run_id), f"run {run_id}")
    result = cancel_run(
        state.connection, run_id, ttl_s=state.settings.dlq_retention_s, by=principal_name(who), reason=reason
    )
    audit.record(
        state.connection,
        "run_cancel",
        result.queue,
        note=f"run {run_id}",
        counts=result.counts,
        actor=actor(request, who),
    )
    return {"data": result.as_dict()}


@router.post(
    "/{run_id}/retry-failed",
    summary='"Continue": retry the failed items, all or nothing',
    openapi_extra={"requestBody": None},
)
def retry_run(
    run_id: str,
    request: Request,
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
    _body: None = Body(None, include_in_schema=False),
) -> dict:
    result, retried = continue_and_audit(state, run_id, who, actor(request, who))
    return {
        "data": {
            "run_id": run_id,
            "run_retry": result.run_retry,
            "retried": retried,
            "free": result.free,
            "charged": result.charged,
            "never_retried": result.never,
            "credits_debited": result.credits_debited,
        }
    }
