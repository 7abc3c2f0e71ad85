"""The dashboard's pages. Each handler: session → authorise → one library call → render. Errors from the
library are shown on the page (HTML), never as a traceback; every POST needs the session's CSRF token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from ...backend import audit
from ...dlq.entry import payload_of, shown, shown_in_list
from ...dlq.replay import patched, replay
from ...dlq.stats import dlq_stats
from ...dlq.store import Filters
from ...errors import GenqueueError, InvalidInput
from ...jobs.enqueue import check_job_id
from ...jobs.status import job_status, without_tracebacks
from ...limits.store import describe as describe_limits
from ...runs.rules import check_run_id
from ...runs.store import snapshot
from ...support.durations import parse_duration
from ...support.secrets import mask
from ...tasks.generate import MAX_PAYLOAD_DEPTH, nesting_exceeds
from ...tenants import credits
from ...tenants.tenancy import check_access
from ...usage.budget_store import all_budgets
from ...usage.budget_store import describe as describe_budget
from ...usage.budgets import UNITS, check_tenant, check_unit, number
from ...usage.store import series as usage_series
from ...usage.store import totals as usage_totals
from ..deps import ServiceState, count_request, service
from ..metrics import read as read_metrics
from ..routes.events import ENDED, job_stream
from ..routes.jobs import EnqueueBody, api_task_names, cancel_and_audit, enqueue_and_audit
from ..routes.runs import continue_and_audit
from . import sessions
from .charts import line_chart

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)


# The statuses a job page offers Cancel for (cancel.lua's queued, scheduled, parked, running); a failed or
# stopped job (RQ's own places) would only be told it had finished.
CANCELABLE = frozenset({"queued", "scheduled", "retrying", "parked", "running"})

# A page's status for the library's errors it shows; unreadable data is 422, as on the API (api/errors.py).
UI_STATUS = {"NOT_FOUND": 404, "FORBIDDEN": 403, "UNREADABLE_JOB": 422, "CORRUPT_ENTRY": 422}


def time_left(seconds: float | None) -> str:
    """A pause's or an open breaker's time left, as a person reads it: 42 s, 4 min 58 s, 1 h 5 min."""
    if seconds is None:
        return ""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


templates.env.filters["time_left"] = time_left
templates.env.filters["amount"] = lambda value: number(round(float(value), 4))


class NeedsLogin(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, session_: sessions.Session, headers: dict[str, str], limit: str) -> None:
        super().__init__(limit)
        self.session, self.headers, self.limit = session_, headers, limit


def session(request: Request, state: ServiceState = Depends(service)) -> sessions.Session:
    """The logged-in session, its request counted against its principal's rate limit (shared with the API)."""
    found = sessions.load_session(state.connection, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise NeedsLogin
    refused = count_request(request, state, found.principal.sub)
    if refused is not None:
        raise RateLimited(found, refused, state.config.rate_limit)
    return found


def page(request: Request, name: str, session_: sessions.Session | None, status: int = 200, **context: Any):
    return templates.TemplateResponse(request, name, {"session": session_, **context}, status_code=status)


def refuse(request: Request, session_: sessions.Session | None, message: str, status: int) -> Response:
    return page(request, "message.html", session_, status=status, title="Not allowed", message=message)


def check_csrf(request: Request, s: sessions.Session, token: str | None) -> Response | None:
    if sessions.csrf_ok(s, token):
        return None
    return refuse(request, s, "This form has no valid CSRF token: reload the page and try again.", 403)


def actor(request: Request, s: sessions.Session) -> str:
    address = request.client.host if request.client else "unknown"
    return f"{s.principal.sub} (tenant {s.principal.tenant}) from {address} via /ui"


def install(app) -> None:
    @app.exception_handler(NeedsLogin)
    async def _login(request: Request, _exc: NeedsLogin):
        return page(
            request,
            "message.html",
            None,
            status=401,
            title="Log in",
            message="Log in with the one-time URL that `genqueue api token --admin --login` prints.",
        )

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited):
        response = page(
            request,
            "message.html",
            exc.session,
            status=429,
            title="Too many requests",
            message=f"Too many requests: the limit is {exc.limit} for you, the API and the dashboard "
            f"together. Try again in {exc.headers.get('Retry-After', '1')} s.",
        )
        response.headers.update(exc.headers)
        return response


@router.get("/login")
def login(request: Request, code: str = "", state: ServiceState = Depends(service)):
    s = sessions.redeem_login(state.connection, code)
    if s is None:
        return page(
            request,
            "message.html",
            None,
            status=401,
            title="Log in",
            message="This login link is unknown, expired (5 minutes) or already used: print a new one "
            "with `genqueue api token --admin --login`.",
        )
    response = RedirectResponse("/ui/", status_code=303)
    secure = state.config.cookie_secure
    response.set_cookie(
        sessions.COOKIE,
        s.sid,
        max_age=sessions.SESSION_TTL_S,
        httponly=True,
        samesite="strict",
        path="/ui",
        # Behind a TLS-terminating proxy the request arrives over http: GENQUEUE_COOKIE_SECURE=true says so.
        secure=request.url.scheme == "https" if secure is None else secure,
    )
    return response


@router.post("/logout")
def logout(
    request: Request,
    csrf: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := check_csrf(request, s, csrf)) is not None:
        return refused
    sessions.end_session(state.connection, s.sid)
    response = page(request, "message.html", None, title="Logged out", message="You are logged out.")
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)):
    if not s.principal.is_admin:
        return page(request, "overview.html", s, queue=state.settings.queue)
    queue = state.settings.queue
    stats = dlq_stats(state.store())
    return page(
        request,
        "overview.html",
        s,
        queue=queue,
        numbers=read_metrics(state.connection, [queue])[queue],
        stats=stats,
        chart=bar_chart(stats["hourly_last_24h"]),
    )


def bar_chart(values: list[int], width: int = 480, height: int = 80) -> dict[str, Any]:
    """Inline SVG bars for dead-letters per hour, oldest hour first."""
    top = max(values, default=0) or 1
    step = width / max(1, len(values))
    bars = [
        {
            "x": round(i * step + 1, 1),
            "w": round(step - 2, 1),
            "h": round(v / top * (height - 14), 1),
            "y": round(height - v / top * (height - 14), 1),
            "v": v,
            "ago": len(values) - i,
        }
        for i, v in enumerate(values)
    ]
    return {"width": width, "height": height, "bars": bars, "max": max(values, default=0)}


@router.get("/usage", response_class=HTMLResponse)
def usage_page(
    request: Request,
    tenant: str = "",
    unit: str = "usd",
    by: str = "tenant",
    since: str = "24h",
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    """Usage per hour as lines per tenant, key or task, the totals and the budgets; a tenant sees its own only."""
    admin = s.principal.is_admin
    scope = (tenant.strip() or None) if admin else s.principal.tenant
    error = None
    try:
        check_unit(unit)
        since_s = parse_duration(since).total_seconds()
        if scope is not None:
            check_tenant(scope)
        drawn = usage_series(state.connection, since_s, unit=unit, by=by, tenant=scope)
        rows = usage_totals(state.connection, since_s, by=("tenant", "task", "key"), tenant=scope)
    except GenqueueError as exc:
        error, drawn, rows = str(exc), {"hours": [], "series": {}}, []
    found = all_budgets(state.connection)
    shown = [
        describe_budget(state.connection, t, b) for t, b in found.items() if admin and scope in (None, t) or t == scope
    ]
    return page(
        request,
        "usage.html",
        s,
        status=400 if error else 200,
        admin=admin,
        scope=scope,
        tenant=tenant,
        unit=unit,
        units=UNITS,
        by=by,
        since=since,
        error=error,
        chart=line_chart(drawn["hours"], drawn["series"]),
        rows=rows,
        budgets=shown,
    )


def admin_only(request: Request, s: sessions.Session, what: str = "The dead-letter queue") -> Response | None:
    if s.principal.is_admin:
        return None
    return refuse(request, s, f"{what} is for admins.", 403)


@router.get("/providers", response_class=HTMLResponse)
def providers(request: Request, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)):
    if (refused := admin_only(request, s, "The providers page")) is not None:
        return refused
    return page(request, "providers.html", s, limits=[mask(row) for row in describe_limits(state.connection)])


@router.get("/dlq", response_class=HTMLResponse)
def dlq_list(
    request: Request,
    kind: str = "",
    user: str = "",
    reason: str = "",
    fingerprint: str = "",
    since: str = "",
    cursor: str = "",
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := admin_only(request, s)) is not None:
        return refused
    form = {"kind": kind, "user": user, "reason": reason, "fingerprint": fingerprint, "since": since}
    try:
        filters = Filters.parse(**form)
        result = state.store().page(filters, cursor=cursor or None, limit=50)
    except GenqueueError as exc:
        return page(request, "dlq_list.html", s, form=form, entries=[], total=0, next_cursor=None, error=str(exc))
    return page(
        request,
        "dlq_list.html",
        s,
        form=form,
        entries=[shown_in_list(e) for e in result.entries],
        total=result.total,
        next_cursor=result.next_cursor,
        error=None,
    )


def entry_page(
    request: Request,
    s: sessions.Session,
    state: ServiceState,
    job_id: str,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
):
    try:
        entry = shown(state.store().get(check_job_id(job_id)))
    except GenqueueError as exc:
        return page(
            request,
            "message.html",
            s,
            status=404 if "no DLQ entry" in str(exc) else UI_STATUS.get(exc.code, 400),
            title="Entry",
            message=error or str(exc),
        )
    return page(request, "entry.html", s, entry=entry, error=error, notice=notice, status=status)


@router.get("/dlq/{job_id}", response_class=HTMLResponse)
def dlq_entry(
    request: Request, job_id: str, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)
):
    if (refused := admin_only(request, s)) is not None:
        return refused
    return entry_page(request, s, state, job_id)


@router.post("/dlq/{job_id}/retry", response_class=HTMLResponse)
def dlq_retry(
    request: Request,
    job_id: str,
    csrf: str = Form(""),
    payload_patch: str = Form(""),
    confirmed: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := admin_only(request, s) or check_csrf(request, s, csrf)) is not None:
        return refused
    store = state.store()
    try:
        patch = json.loads(payload_patch) if payload_patch.strip() else None
        if patch is not None and not isinstance(patch, dict):
            raise InvalidInput("the payload patch must be a JSON object")
        if nesting_exceeds(patch, MAX_PAYLOAD_DEPTH):  # before the preview's merge and mask recurse into it
            raise InvalidInput(f"it nests more than {MAX_PAYLOAD_DEPTH} levels deep")
    except RecursionError:
        return entry_page(request, s, state, job_id, status=400, error="payload patch: nested too deeply")
    except (ValueError, InvalidInput) as exc:
        return entry_page(request, s, state, job_id, status=400, error=f"payload patch: {exc}")
    if patch and not confirmed:
        try:
            entry = store.get(check_job_id(job_id))
            after = payload_of(patched(entry, patch))  # the generate payload or a task's kwargs, checked
        except InvalidInput as exc:
            return entry_page(request, s, state, job_id, status=400, error=f"payload patch: {exc}")
        except GenqueueError as exc:
            return entry_page(request, s, state, job_id, status=409, error=str(exc))
        return page(
            request,
            "confirm_replay.html",
            s,
            job_id=job_id,
            before=mask(payload_of(entry)),
            after=mask(after),
            payload_patch=payload_patch,
        )
    try:
        job = replay(store, check_job_id(job_id), payload_patch=patch)
    except GenqueueError as exc:
        status = 409 if exc.code == "CONFLICT" else 400
        message = f"Not replayed: {exc}" + (" (already replayed)" if "replayed" in str(exc) else "")
        return page(request, "message.html", s, status=status, title=f"Replay {job_id}", message=message)
    audit.record(
        state.connection,
        "retry",
        store.keys.queue,
        ids=[job.id],
        counts={"replayed": 1},
        note="payload patched" if patch else None,
        actor=actor(request, s),
    )
    return page(
        request,
        "message.html",
        s,
        title=f"Replayed {job_id}",
        message=f"Job {job_id} is queued again with a fresh retry budget.",
        link=f"/ui/jobs?id={job_id}",
    )


@router.post("/dlq/{job_id}/delete", response_class=HTMLResponse)
def dlq_delete(
    request: Request,
    job_id: str,
    csrf: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := admin_only(request, s) or check_csrf(request, s, csrf)) is not None:
        return refused
    store = state.store()
    try:
        store.delete(check_job_id(job_id))
    except GenqueueError as exc:
        return page(request, "message.html", s, status=404, title=f"Delete {job_id}", message=str(exc))
    audit.record(
        state.connection, "delete", store.keys.queue, ids=[job_id], counts={"deleted": 1}, actor=actor(request, s)
    )
    return page(
        request, "message.html", s, title=f"Deleted {job_id}", message=f"DLQ entry {job_id} deleted.", link="/ui/dlq"
    )


@router.get("/jobs", response_class=HTMLResponse)
def job_lookup(
    request: Request, id: str = "", s: sessions.Session = Depends(session), state: ServiceState = Depends(service)
):
    if not id:
        return page(request, "job.html", s, job=None, error=None)
    return job_page(request, s, state, id.strip())


def job_page(
    request: Request, s: sessions.Session, state: ServiceState, job_id: str, status: int = 200, **extra: Any
) -> Response:
    try:
        info = job_status(state.connection, state.store(), check_job_id(job_id))
        check_access(s.principal, info.get("tenant"), f"job {job_id}")
    except GenqueueError as exc:
        return page(request, "job.html", s, job=None, error=str(exc), status=UI_STATUS.get(exc.code, 400), **extra)
    shown_job = info if s.principal.is_admin else without_tracebacks(info)
    ended, cancelable = info["status"] in ENDED, info["status"] in CANCELABLE
    return page(
        request, "job.html", s, job=shown_job, error=None, ended=ended, cancelable=cancelable, status=status, **extra
    )


PRIORITIES = ("high", "normal", "low")


def new_job_page(
    request: Request, s: sessions.Session, state: ServiceState, form: dict[str, str], error: str | None, status: int
) -> Response:
    tasks = ["generate", *api_task_names(state, s.principal)]
    return page(request, "job_new.html", s, tasks=tasks, priorities=PRIORITIES, form=form, error=error, status=status)


@router.get("/jobs/new", response_class=HTMLResponse)
def job_new(request: Request, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)):
    return new_job_page(request, s, state, {"task": "generate", "payload": "", "priority": ""}, None, 200)


@router.post("/jobs", response_class=HTMLResponse)
def job_create(
    request: Request,
    csrf: str = Form(""),
    task: str = Form("generate"),
    payload: str = Form(""),
    priority: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    """The New job form: the API's enqueue (POST /api/jobs: same checks, tenant and audit) as the session's
    principal; `payload` is the generate payload, or a task's kwargs. Bad input: the form again, one line."""
    if (refused := check_csrf(request, s, csrf)) is not None:
        return refused
    form = {"task": task, "payload": payload, "priority": priority}
    name = task.strip() or "generate"
    try:
        data = json.loads(payload) if payload.strip() else {}
        if not isinstance(data, dict):
            raise InvalidInput("it must be a JSON object")
        if nesting_exceeds(data, MAX_PAYLOAD_DEPTH):
            raise InvalidInput(f"it nests more than {MAX_PAYLOAD_DEPTH} levels deep")
    except RecursionError:
        return new_job_page(request, s, state, form, "payload: nested too deeply", 400)
    except (ValueError, InvalidInput) as exc:
        return new_job_page(request, s, state, form, f"payload: {exc}", 400)
    if priority and priority not in PRIORITIES:
        return new_job_page(request, s, state, form, f"priority: one of {', '.join(PRIORITIES)}", 400)
    try:
        generate = name in ("generate", "genqueue.jobs.generate")
        fields = {"payload": data} if generate else {"task": name, "kwargs": data}
        body = EnqueueBody.model_validate({**fields, "priority": priority or None})  # the API's own body
        result, _ = enqueue_and_audit(state, s.principal, body, actor(request, s))
    except ValidationError as exc:
        return new_job_page(request, s, state, form, f"Not enqueued: {exc.errors()[0]['msg']}", 400)
    except GenqueueError as exc:
        return new_job_page(request, s, state, form, f"Not enqueued: {exc}", UI_STATUS.get(exc.code, 400))
    return RedirectResponse(f"/ui/jobs?id={result.job.id}", status_code=303)


@router.get("/jobs/{job_id}/events")
def job_events(
    request: Request, job_id: str, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)
):
    """The job page's live feed: the API's SSE stream (same generator, tenant check and per-caller bound)
    behind the dashboard's session cookie, which is scoped to /ui. EventSource resumes with Last-Event-ID."""
    return job_stream(state, s.principal, job_id, request.headers.get("last-event-id"))


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def job_cancel(
    request: Request,
    job_id: str,
    csrf: str = Form(""),
    reason: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := check_csrf(request, s, csrf)) is not None:
        return refused
    why = reason.strip()[:500] or None
    try:
        outcome = cancel_and_audit(state, s.principal, job_id, actor(request, s), why)
    except GenqueueError as exc:
        status = 409 if exc.code == "CONFLICT" else UI_STATUS.get(exc.code, 400)
        return job_page(request, s, state, job_id, status=status, failure=f"Not canceled: {exc}")
    if outcome.already:
        notice = f"Job {job_id} was already canceled."
    elif outcome.stopping:
        notice = f"Canceled: job {job_id} was running; its worker stops it now."
    else:
        notice = f"Canceled: job {job_id} was {outcome.previous_status}."
    return job_page(request, s, state, job_id, notice=notice)


def run_page(request: Request, s: sessions.Session, state: ServiceState, run_id: str, **extra: Any):
    try:
        snap = snapshot(state.connection, check_run_id(run_id.strip()), ttl_s=state.settings.dlq_retention_s)
        check_access(s.principal, snap.run.tenant, f"run {run_id}")
    except GenqueueError as exc:
        return page(
            request,
            "run.html",
            s,
            run=None,
            error=str(exc),
            status=404 if exc.code == "NOT_FOUND" else 403 if exc.code == "FORBIDDEN" else 400,
        )
    return page(request, "run.html", s, run=snap.to_dict(), error=None, **extra)


@router.get("/runs", response_class=HTMLResponse)
def run_lookup(
    request: Request, id: str = "", s: sessions.Session = Depends(session), state: ServiceState = Depends(service)
):
    if not id:
        return page(request, "run.html", s, run=None, error=None)
    return run_page(request, s, state, id)


@router.get("/runs/{run_id}/continue", response_class=HTMLResponse)
def continue_confirm(
    request: Request, run_id: str, s: sessions.Session = Depends(session), state: ServiceState = Depends(service)
):
    response = run_page(request, s, state, run_id)
    if response.status_code != 200:
        return response
    info = snapshot(state.connection, run_id, ttl_s=state.settings.dlq_retention_s).to_dict()
    classes = {c: [f["id"] for f in info["failed_items"] if f["retry"] == c] for c in ("free", "charged", "never")}
    tenant = info.get("tenant")
    balance = credits.balance(state.connection, tenant) if tenant else None
    return page(
        request,
        "confirm_continue.html",
        s,
        run=info,
        classes=classes,
        balance=balance,
        cost=len(classes["charged"]) if balance is not None else 0,
    )


@router.post("/runs/{run_id}/continue", response_class=HTMLResponse)
def continue_run(
    request: Request,
    run_id: str,
    csrf: str = Form(""),
    s: sessions.Session = Depends(session),
    state: ServiceState = Depends(service),
):
    if (refused := check_csrf(request, s, csrf)) is not None:
        return refused
    try:
        result, retried = continue_and_audit(state, run_id, s.principal, actor(request, s))
    except GenqueueError as exc:
        return run_page(request, s, state, run_id, notice=None, failure=f"Not continued: {exc}")
    return run_page(
        request,
        s,
        state,
        run_id,
        failure=None,
        notice=f"Continued: {len(retried)} item(s) retried ({len(result.charged)} charged, "
        f"{len(result.free)} free), {len(result.never)} never retried"
        + (f"; {result.credits_debited} credit(s) debited" if result.credits_debited else "")
        + ".",
    )
