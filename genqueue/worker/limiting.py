"""Which limit key a job has, and the arguments of its claim and release scripts (limits/lua/limits.lua).

A job of the built-in generate task has the key `<provider>:<model>` (GENQUEUE_PROVIDER of the worker that
runs it, the payload's model), so every such job goes through its key's pause (the breaker learns from a
429's Retry-After even where nothing is declared). A task has a key when it declares `limit_key` (a string
or a template over its kwargs) and the limits its declaration gives as defaults; `genqueue limits set`
overrides them in Redis for every worker at once. A task without a limit_key is not limited.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from ..backend import keys
from ..limits.rules import (
    BREAKER_MIN_CALLS,
    DEFAULT_COOLDOWN_S,
    MAX_WAIT_BOUND_S,
    Limits,
    duration_s,
    generate_key,
    lease_ms,
    parse_event,
    render_key,
)
from ..retry.kinds import ErrorKind
from ..retry.manager import DEFAULT_MAX_WAIT_S, Decision, Failure
from ..retry.meta import gq
from ..tasks.context import take_pause, take_usage
from ..tasks.estimates import estimate_of
from ..tasks.registry import lookup
from ..tenants.tenancy import job_tenant
from ..usage.record import record_args, settle_of, spent

NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class JobLimit:
    key: str
    declared: Limits
    tenant: str
    max_wait_s: float = DEFAULT_MAX_WAIT_S  # the job's: no pause of its key it causes lasts longer than this
    estimate: tuple[tuple[str, float], ...] = ()  # what one call will spend (tasks/estimates.py), reserved at start

    @property
    def prefix(self) -> str:
        return keys.limit_prefix(self.key)


def default_cooldown_s() -> float:
    """The breaker's cooldown for keys whose task declares none: GENQUEUE_BREAKER_COOLDOWN (30s, 2m, or
    seconds; 0 turns the breaker off), read like GENQUEUE_PROVIDER; `genqueue worker` checks it at start."""
    return _cooldown(os.environ.get("GENQUEUE_BREAKER_COOLDOWN") or "")


@functools.lru_cache(maxsize=4)
def _cooldown(raw: str) -> float:
    """Parsed as a declaration's "cooldown" is (limits.rules.duration_s), named after the variable."""
    parsed = None if not raw else duration_s(raw, "GENQUEUE_BREAKER_COOLDOWN", zero=True)
    return DEFAULT_COOLDOWN_S if parsed is None else parsed


def limit_or_none(job) -> JobLimit | None:
    """limit_of, None when the key cannot be rendered: such a job never took a slot (claims.rendered_limit)."""
    try:
        return limit_of(job)
    except Exception:  # noqa: BLE001 - the key's error was the job's failure already
        return None


def limit_of(job) -> JobLimit | None:
    """The job's limit key and declared limits; raises when its key cannot be rendered (InvalidInput)."""
    try:
        spec = lookup(job.func_name)
        args, kwargs = job.args, job.kwargs
    except Exception:  # noqa: BLE001 - unreadable job data: it will be refused (worker/job.py), not limited
        return None
    if spec is None:
        return None
    if spec.positional:
        payload = args[0] if args else {}
        key, declared = generate_key(os.environ.get("GENQUEUE_PROVIDER") or "simulated", payload), NO_LIMITS
        user = payload.get("user_id") if isinstance(payload, dict) else None
    elif spec.limit_key:
        key, declared, user = render_key(spec.limit_key, kwargs), spec.limits or NO_LIMITS, kwargs.get("user_id")
    else:
        return None
    meta = gq(job)
    tenant = meta.get("tenant") or user or "-"
    if declared.cooldown_s is None:
        declared = replace(declared, cooldown_s=default_cooldown_s())
    estimate = tuple(sorted(estimate_of(spec, args, kwargs, provider()).items()))
    return JobLimit(key, declared, str(tenant), max_wait_of(declared, meta), estimate)


def provider() -> str:
    return os.environ.get("GENQUEUE_PROVIDER") or "simulated"


def estimate_for(job, limit: JobLimit | None) -> dict[str, float]:
    """The job's estimate: its limit's (computed with it), else its task's ({} when none or unreadable)."""
    if limit is not None:
        return dict(limit.estimate)
    try:
        spec = lookup(job.func_name)
        return {} if spec is None else estimate_of(spec, job.args, job.kwargs, provider())
    except Exception:  # noqa: BLE001 - unreadable data or a failing estimate: nothing to count
        return {}


def _payer(job) -> str | None:
    """The tenant whose usage an attempt is: the rule budgets check at enqueue (tenancy.job_tenant: the job's
    tenant, else its payload's user_id), so what is spent is counted against the budget that allowed it."""
    meta = gq(job)
    try:
        payload = job.args[0] if job.args else job.kwargs
    except Exception:  # noqa: BLE001 - an unreadable payload must not fail the move: the job's own tenant
        payload = None
    return job_tenant(meta, payload)


def attempt_usage(job, limit: JobLimit | None, *, crashed: bool = False) -> tuple[str, list[Any]]:
    """What the move that ends the attempt settles and records: (the settle JSON for the release — '' when
    the reservation is only dropped —, usage/lua/record.lua's arguments). What the attempt reported through
    `genqueue.current().usage`, else its estimate; a crash (the sweep: nobody saw what it spent) reports
    nothing and records nothing unless its own process had a report."""
    reported = take_usage(job.id)
    if crashed and not reported:
        return "", []
    amounts = spent(reported, estimate_for(job, limit))
    if not amounts:
        return "", []
    tenant = _payer(job)
    spec = lookup(job.func_name)
    task = spec.name if spec is not None else str(job.func_name)
    settle = settle_of(amounts)
    return (
        json.dumps(settle, separators=(",", ":")) if settle else "",
        record_args(None if tenant is None else str(tenant), task, limit.key if limit else None, amounts, now_ms()),
    )


def max_wait_of(declared: Limits, meta: dict[str, Any]) -> float:
    """The job's max_wait (the task's declaration, else the job's own, else 1 h), within its bounds."""
    try:
        wait = float(declared.max_wait_s or meta.get("max_wait") or DEFAULT_MAX_WAIT_S)
    except (TypeError, ValueError):
        wait = DEFAULT_MAX_WAIT_S
    return wait if 0 < wait <= MAX_WAIT_BOUND_S else DEFAULT_MAX_WAIT_S


def now_ms() -> int:
    return int(time.time() * 1000)


def acquire_args(limit: JobLimit | None, job, intermediate_key: str) -> list[Any]:
    if limit is None:
        return []
    return [
        limit.prefix,
        keys.LIMITS_WAKE,
        keys.LIMITS_KNOWN,
        limit.key,
        job.id,
        job.key,
        limit.tenant,
        now_ms(),
        *limit.declared.args(),
        lease_ms(job.timeout),
        limit.declared.cooldown_ms(),
        intermediate_key,
        int(limit.max_wait_s * 1000),
        json.dumps(dict(limit.estimate), separators=(",", ":")) if limit.estimate else "",
        *limit.declared.unit_args(),
    ]


def pause_cap_ms(pause: int, max_wait_s: float) -> int:
    return max(0, min(int(pause), int(max_wait_s * 1000)))


def pause_ms(decision: Decision | None, failure: Failure | None) -> int:
    """A 429 with a Retry-After pauses its whole key until then: the key's other jobs park, not call. (Its
    retry_after may come from the limits' reset headers instead: retry/headers.py.)"""
    if decision is None or failure is None or decision.kind is not ErrorKind.RATE_LIMITED:
        return 0
    return int((failure.retry_after or 0) * 1000)


# What the breaker counts (limits.lua lim_breaker_after): a failure of the provider, an answer (a permanent
# error is the provider answering), a 429 (the pause's business, counted for `genqueue limits`), or
# nothing at all — a crash or a stop is the worker's doing, not the provider's.
OUTCOME = {
    ErrorKind.TRANSIENT: "fail",
    ErrorKind.TIMEOUT: "fail",
    ErrorKind.RATE_LIMITED: "limited",
    ErrorKind.PERMANENT: "answered",
    ErrorKind.UNKNOWN: "answered",
    ErrorKind.CRASH: "",
}


def outcome_of(decision: Decision | None) -> str:
    return "" if decision is None else OUTCOME.get(decision.kind, "")


def release_args(
    limit: JobLimit | None, job_id: str, pause: int = 0, outcome: str = "ok", settle: str = ""
) -> list[Any]:
    """The release of the move that ends an attempt (success, retry, dead letter). Its pause is the longer
    of the move's own (`pause_ms`) and what the attempt asked for through `genqueue.current().pause_key`
    (a provider's headers saying a limit is spent): taken here, once, for every move alike. Whatever a
    provider said (`Retry-After: 3000000000`, a reset of `99999999h`), it never exceeds the job's max_wait:
    a job waits that long at most before it is dead-lettered, so a longer pause would only hold up others.
    `settle` (attempt_usage): what replaces the job's unit reservation; '' drops it."""
    pause = max(pause, int(take_pause(job_id) * 1000))
    if limit is None:
        return []
    pause = pause_cap_ms(pause, limit.max_wait_s)
    return [
        limit.prefix,
        keys.LIMITS_WAKE,
        limit.key,
        job_id,
        now_ms(),
        pause,
        keys.RQ_JOB_PREFIX,
        keys.RQ_QUEUE_PREFIX,
        outcome,
        BREAKER_MIN_CALLS,
        limit.declared.cooldown_ms(),
        limit.tenant,
        settle,
    ]


def log_event(log, key: str, raw, tenant: str | None = None) -> None:
    """The one log line a breaker change gets, written by the worker whose release changed it."""
    event = parse_event(raw)
    if event is None:
        return
    if event.what == "tenant_opened":
        log.warning(
            "limit.tenant_breaker_opened",
            key=key,
            tenant=tenant,
            failed=event.failed,
            calls=event.calls,
            cooldown_s=event.cooldown_s,
        )
    elif event.what == "closed":
        log.warning("limit.breaker_closed", key=key)
    else:
        log.warning(
            f"limit.breaker_{event.what}", key=key, failed=event.failed, calls=event.calls, cooldown_s=event.cooldown_s
        )
