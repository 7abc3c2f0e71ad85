"""The built-in delivery task, genqueue.webhook: one signed POST of one event to one URL.

A delivery is an ordinary genqueue job on its own queue (GENQUEUE_WEBHOOK_QUEUE, default `genqueue-webhooks`),
so its failures go through the RetryManager like any job's: 5xx, timeouts and connection errors TRANSIENT;
429 RATE_LIMITED, waiting its Retry-After; any other 4xx, a 3xx (redirects are never followed) or a URL no
longer allowed PERMANENT — dead-lettered, replayable with `genqueue dlq retry`. The URL is checked again here,
with its host resolved again, right before the call (a name re-pointed at a private address since the enqueue
is refused). The body is the event as `jobs watch` and the SSE routes show it; the signature headers are
Standard Webhooks' (signing.py), `webhook-id` the same on every retry of one event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput
from ..retry.exceptions import GenerationError, PermanentError, RateLimited, TransientError
from ..retry.headers import parse_retry_after
from ..settings import Settings, webhook_allow
from ..support.secrets import mask_url
from ..tasks.registry import TaskSpec, lookup, register
from . import signing
from .urls import AllowList, checked, pinned

WEBHOOK_TASK = "genqueue.webhook"


def outcome(status: int, headers: Mapping[str, str], shown_url: str) -> GenerationError | None:
    """What a response means for the delivery (pure): None delivered, else the exception to raise."""
    if 200 <= status < 300:
        return None
    what = f"webhook {shown_url} answered {status}"
    if status == 429:
        return RateLimited(what, retry_after=parse_retry_after(headers.get("retry-after")))
    if status >= 500 or status == 408:
        return TransientError(what, status_code=status)
    if 300 <= status < 400:
        return PermanentError(f"{what} (a redirect: webhooks never follow one)", status_code=status)
    return PermanentError(what, status_code=status)


def secret_for(tenant: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The signing secret: the tenant's own, when an admin set one (`genqueue webhooks secret`), else
    GENQUEUE_WEBHOOK_SECRET."""
    env = os.environ if environ is None else environ
    if tenant:
        own = _tenant_secret(tenant)
        if own:
            return own
    return env.get("GENQUEUE_WEBHOOK_SECRET")


def _tenant_secret(tenant: str) -> str | None:
    from ..tasks.context import current

    ctx = current()
    connection = ctx.live.connection if ctx is not None else None
    if connection is None:
        return None
    from ..backend import keys
    from ..backend.replies import text

    raw = connection.hget(keys.WEBHOOK_SECRETS, tenant)
    return text(raw) if raw else None


def deliver(webhook: str, event: dict[str, Any], msg_id: str, tenant: str | None = None) -> dict[str, Any]:
    """POST `event` to `webhook`, signed; raises to be retried or dead-lettered (see `outcome`)."""
    import httpx  # here, in the work horse: a worker's start imports this module to register the task

    settings = Settings.from_env()
    shown = mask_url(webhook)
    try:
        _url, addresses = checked(webhook, AllowList.parse(webhook_allow()))  # resolved again: DNS rebinding
        hook = signing.signer(secret_for(tenant))
    except InvalidInput as exc:
        raise PermanentError(str(exc)) from None
    body = json.dumps(event, separators=(",", ":"), default=str).encode()
    target, extra_headers, extensions = pinned(webhook, addresses[0]) if addresses else (webhook, {}, {})
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(
                target,
                content=body,
                headers={**signing.headers(hook, msg_id, body), **extra_headers},
                extensions=extensions,
            )
    except httpx.TimeoutException:
        raise TransientError(f"webhook {shown} timed out after {settings.webhook_timeout_s:g} s") from None
    except httpx.TransportError as exc:
        raise TransientError(f"webhook {shown} could not be reached ({type(exc).__name__})") from None
    failure = outcome(response.status_code, response.headers, shown)
    if failure is not None:
        raise failure
    return {"status": response.status_code, "webhook_id": msg_id}


def ensure_registered() -> TaskSpec:
    """Register the delivery task in this process (a worker's start does it, so any worker serving the
    webhook queue runs deliveries)."""
    return lookup(WEBHOOK_TASK) or register(TaskSpec(WEBHOOK_TASK, deliver, timeout=None))
