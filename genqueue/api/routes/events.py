"""Server-Sent Events of a job or a run: `GET /api/jobs/{id}/events`, `GET /api/runs/{id}/events`.

Each SSE message is one event of the job's stream (jobs/events.py): `id:` the stream id, `event:` its name,
`data:` {"id", "event", "job_id", "at", "data"}. A client that reconnects with `Last-Event-ID` gets every
event after that id, nothing lost, nothing twice. The stream ends after the job's terminal event (`finished`,
`dead_lettered`, `canceled`) when no newer event follows it — for a run, once every item has ended; a comment
(`: keep-alive`) every HEARTBEAT_S keeps proxies from closing an idle connection. Tenant-checked as the job's
or run's status is; at most MAX_STREAMS_PER_PRINCIPAL open streams per caller in one process (429 beyond).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from ...jobs.events import Event, read, read_many
from ...runs.store import load_run as load_run_record
from ...runs.store import read_items
from ...tenants.tenancy import Principal, check_access
from ..deps import ServiceState, principal, service
from ..errors import ApiError
from .jobs import visible_status

router = APIRouter(tags=["events"])
HEARTBEAT_S = 15.0  # a comment line this often on an idle stream
BLOCK_MS = 1000  # one XREAD waits this long at most, then the loop looks at the clock and the client
MAX_STREAMS_PER_PRINCIPAL = 10
ENDED = {"finished", "dead", "canceled"}  # a job status with no event to wait for
_open: dict[str, int] = {}
_open_lock = threading.Lock()


def _acquire(sub: str) -> None:
    with _open_lock:
        if _open.get(sub, 0) >= MAX_STREAMS_PER_PRINCIPAL:
            raise ApiError(
                429, "TOO_MANY_STREAMS", f"at most {MAX_STREAMS_PER_PRINCIPAL} open event streams per caller"
            )
        _open[sub] = _open.get(sub, 0) + 1


def _release(sub: str) -> None:
    with _open_lock:
        _open[sub] = max(0, _open.get(sub, 1) - 1)


def sse(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.event}\ndata: {json.dumps(event.as_dict(), separators=(',', ':'))}\n\n"


def _cursor(last_event_id: str | None, query: str | None) -> str:
    raw = (last_event_id or query or "0").strip()
    parts = raw.split("-")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ApiError(400, "INVALID_INPUT", f"Last-Event-ID must be a stream id like 1733300000000-0, not {raw!r}")
    return raw


async def _stream(
    state: ServiceState, cursors: dict[str, str], live: set[str], ended_before: bool
) -> AsyncIterator[str]:
    """Backlog after the cursors, then live events, until every job in `live` has ended."""
    beat = time.monotonic()
    backlog: list[Event] = []
    for job_id, after in cursors.items():
        backlog += await asyncio.to_thread(read, state.connection, job_id, after)
    backlog.sort(key=lambda e: tuple(int(x) for x in e.id.split("-")))
    for event in backlog:
        yield sse(event)
        cursors[event.job_id] = event.id
    _settle(backlog, live)
    if not live or ended_before:  # ended when asked: what the stream holds is all there is
        return
    while live:
        events = await asyncio.to_thread(read_many, state.connection, {j: cursors[j] for j in live}, BLOCK_MS, 500)
        for event in events:
            yield sse(event)
            cursors[event.job_id] = event.id
            beat = time.monotonic()
        _settle(events, live)
        if time.monotonic() - beat >= HEARTBEAT_S:
            yield ": keep-alive\n\n"
            beat = time.monotonic()


def _settle(events: list[Event], live: set[str]) -> None:
    """Jobs whose last event in this batch is terminal have ended (a replay after it would come later)."""
    last: dict[str, Event] = {}
    for event in events:
        last[event.job_id] = event
    for job_id, event in last.items():
        if event.terminal:
            live.discard(job_id)


def _response(body: AsyncIterator[str], sub: str) -> StreamingResponse:
    # Given back when the generator goes away, whether it ran to its end, was closed by a disconnect, or
    # never started (a client gone before the first byte): a `finally` in it would miss the last case.
    weakref.finalize(body, _release, sub)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


@router.get("/api/jobs/{job_id}/events", summary="A job's events as Server-Sent Events (resumable)")
def job_events(
    job_id: str,
    last_event_id: str | None = Header(None),
    after: str | None = Query(None, description="as the Last-Event-ID header: resume after this event id"),
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> StreamingResponse:
    return job_stream(state, who, job_id, last_event_id or after)


def job_stream(state: ServiceState, who: Principal, job_id: str, resume: str | None) -> StreamingResponse:
    """The job's SSE response for `who` (tenant-checked, bounded per caller), resuming after event id
    `resume`: shared by this route and the dashboard's job page (ui/routes.py, behind its session)."""
    info = visible_status(state, who, job_id)
    cursor = _cursor(resume, None)
    ended = info["status"] in ENDED
    _acquire(who.sub)
    return _response(_stream(state, {job_id: cursor}, {job_id}, ended), who.sub)


@router.get("/api/runs/{run_id}/events", summary="A run's items' events as Server-Sent Events")
def run_events(
    run_id: str,
    last_event_id: str | None = Header(None),
    after: str | None = Query(None, description="as the Last-Event-ID header: resume after this event id"),
    who: Principal = Depends(principal),
    state: ServiceState = Depends(service),
) -> StreamingResponse:
    run = load_run_record(state.connection, run_id)
    check_access(who, run.tenant, f"run {run_id}")
    cursor = _cursor(last_event_id, after)
    items = read_items(state.connection, run, state.store(), details=False)
    live = {i.job_id for i in items if i.status not in ENDED | {"missing", "failed", "stopped"}}
    cursors = {i.job_id: cursor for i in items}
    _acquire(who.sub)
    return _response(_stream(state, cursors, live, not live), who.sub)
