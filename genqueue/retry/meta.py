"""genqueue's bookkeeping inside an RQ job: `job.meta["genqueue"]` (JSON, saved with the job)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .manager import DEFAULT_MAX_WAIT_S, RetryState

if TYPE_CHECKING:
    from rq.job import Job

META_KEY = "genqueue"
MANUAL_RETRY = "manual_retry"  # a history record marking an admin's retry: a boundary, not an attempt


CANCELED = "canceled"  # the record of a cancel (worker/cancel.py, jobs/status.py): who, when, why


def failures(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of real (failed) attempts; manual-retry and cancel records are skipped."""
    return [h for h in history if h.get("action") not in (MANUAL_RETRY, CANCELED)]


def new_meta(
    max_retries: int | None = None,
    *,
    replays: int = 0,
    replayed_from: str | None = None,
    history: list[dict[str, Any]] | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Fresh bookkeeping. A replay passes the old history: attempt numbers continue, the budget restarts
    (`budget_from` marks where, so backoff exponents restart too)."""
    history = list(history or [])
    return {
        META_KEY: {
            "max_retries": max_retries,
            "retries": 0,
            "crashes": 0,
            "history": history,
            "budget_from": len(history),
            "replays": replays,
            "replayed_from": replayed_from,
            "tenant": tenant,  # who may see and retry it over HTTP (tenancy.py); None: the payload's user_id
        }
    }


def gq(job: Job) -> dict[str, Any]:
    meta: dict[str, Any] = job.meta.setdefault(META_KEY, {})
    for key, default in new_meta()[META_KEY].items():
        meta.setdefault(key, [] if key == "history" else 0 if key == "budget_from" else default)
    return meta


def retry_state(job: Job) -> RetryState:
    meta = gq(job)
    budget_from = int(meta.get("budget_from") or 0)
    return RetryState(
        retries=int(meta.get("retries") or 0),
        crashes=int(meta.get("crashes") or 0),
        max_retries=meta.get("max_retries"),
        history_kinds=tuple(h.get("kind", "") for h in failures(meta["history"][budget_from:])),
        attempts_before=len(failures(meta["history"][:budget_from])),
        policy_overrides=meta.get("policy") or {},
        rate_limited_since=_rate_limited_since(meta["history"][budget_from:]),
        max_wait_s=float(meta.get("max_wait") or DEFAULT_MAX_WAIT_S),
    )


def _rate_limited_since(history: list[dict[str, Any]]) -> float | None:
    from datetime import datetime

    for record in failures(history):
        if record.get("kind") == "RATE_LIMITED" and record.get("started_at"):
            try:
                return datetime.fromisoformat(str(record["started_at"]).replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


def attempt_number(job: Job) -> int:
    return len(failures(gq(job).get("history", []))) + 1
