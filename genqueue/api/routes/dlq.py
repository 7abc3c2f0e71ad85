"""/api/dlq (admin only): list with the CLI's filters and cursor, stats, one entry, replay (exactly once),
delete, bulk replay (bounded per call, resumable by cursor) — over genqueue.dlq."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ...backend import audit
from ...dlq.bulk import bulk_replay, count_matching, matching
from ...dlq.entry import shown, shown_in_list
from ...dlq.replay import replay
from ...dlq.stats import dlq_stats
from ...dlq.store import Filters
from ...jobs.enqueue import check_job_id
from ...support.secrets import mask
from ...tenants.tenancy import Principal
from ..deps import ServiceState, admin, service
from . import actor

router = APIRouter(prefix="/api/dlq", tags=["dlq (admin)"])
BULK_MAX = 1000  # entries one bulk call handles; the returned cursor resumes


class FilterBody(BaseModel):
    kind: str | None = None
    func: str | None = None
    user: str | None = None
    reason: str | None = None
    fingerprint: str | None = None
    since: str | None = Field(None, description="a duration ago (2h) or an ISO timestamp")
    until: str | None = None

    def filters(self) -> Filters:
        return Filters.parse(**self.model_dump(include=set(FilterBody.model_fields)))


async def query_filters(
    kind: str | None = None,
    func: str | None = None,
    user: str | None = None,
    reason: str | None = None,
    fingerprint: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Filters:
    # async (pure, no I/O): FastAPI runs a sync dependency through run_in_threadpool(func, **params), and a
    # query parameter named `func` collides with that call's own argument.
    return Filters.parse(
        kind=kind, func=func, user=user, reason=reason, fingerprint=fingerprint, since=since, until=until
    )


@router.get("", summary="Dead-lettered jobs, newest first, filtered, by cursor")
def list_entries(
    filters: Filters = Depends(query_filters),
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    page = state.store().page(filters, cursor=cursor, limit=limit)
    return {
        "data": [shown_in_list(e) for e in page.entries],
        "next_cursor": page.next_cursor,
        "total": page.total,
        "skipped_corrupt": page.skipped,
    }


@router.get("/stats", summary="Counts by kind, func, user and reason; top fingerprints; counters")
def stats(
    filters: Filters = Depends(query_filters), _: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    return {"data": mask(dlq_stats(state.store(), filters))}


@router.get("/{job_id}", summary="One entry: payload (secrets masked), every attempt, tracebacks")
def get_entry(job_id: str, _: Principal = Depends(admin), state: ServiceState = Depends(service)) -> dict:
    return {"data": shown(state.store().get(check_job_id(job_id)))}


class ReplayBody(BaseModel):
    payload_patch: dict[str, Any] | None = Field(None, description="a JSON merge patch for the payload")
    force: bool = Field(False, description="replay past the replay cap")


@router.post("/{job_id}/retry", summary="Replay one entry with a fresh budget (exactly once)")
def replay_entry(
    job_id: str,
    request: Request,
    body: ReplayBody | None = None,
    who: Principal = Depends(admin),
    state: ServiceState = Depends(service),
) -> dict:
    body = body or ReplayBody()
    store = state.store()
    job = replay(store, check_job_id(job_id), force=body.force, payload_patch=body.payload_patch)
    audit.record(
        state.connection,
        "retry",
        store.keys.queue,
        ids=[job.id],
        counts={"replayed": 1},
        note="payload patched" if body.payload_patch else None,
        actor=actor(request, who),
    )
    return {"data": {"job_id": job.id, "status": "queued", "replays": job.meta["genqueue"]["replays"]}}


@router.delete("/{job_id}", summary="Delete one entry")
def delete_entry(
    job_id: str, request: Request, who: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    store = state.store()
    store.delete(check_job_id(job_id))  # NotFound when absent; a corrupt entry is deleted too
    audit.record(
        state.connection, "delete", store.keys.queue, ids=[job_id], counts={"deleted": 1}, actor=actor(request, who)
    )
    return {"data": {"job_id": job_id, "deleted": True}}


class BulkBody(FilterBody):
    dry_run: bool = False
    cursor: str | None = Field(None, description="resume after this cursor (from the previous call)")
    limit: int = Field(BULK_MAX, ge=1, le=BULK_MAX, description="entries this call handles at most")
    force: bool = False


@router.post("/retry", summary="Bulk replay by filters; dry_run; bounded per call, resumable by cursor")
def bulk(
    body: BulkBody, request: Request, who: Principal = Depends(admin), state: ServiceState = Depends(service)
) -> dict:
    store, filters = state.store(), body.filters()
    if body.dry_run:
        sample = [job_id for batch in matching(store, filters, body.cursor, 50) for job_id, _, _ in batch][:50]
        return {"data": {"dry_run": True, "matching": count_matching(store, filters), "sample": sample}}
    result = bulk_replay(store, filters, cursor=body.cursor, force=body.force, limit=body.limit)
    audit.record(
        state.connection,
        "retry_all",
        store.keys.queue,
        filters=body.model_dump(exclude={"cursor", "limit"}),
        counts={"replayed": result.done, **result.skipped},
        ids=result.ids,
        actor=actor(request, who),
    )
    return {
        "data": {
            "replayed": result.done,
            "skipped": result.skipped,
            "ids": result.ids[:BULK_MAX],
            "next_cursor": result.cursor if result.more else None,
        }
    }
