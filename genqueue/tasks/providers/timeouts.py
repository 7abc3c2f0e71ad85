"""How long one provider call may take: GENQUEUE_PROVIDER_TIMEOUT, capped below the job's own timeout.

The job timeout (RQ's, default 180 s) kills the work horse; a provider call that runs into it is recorded
as a JobTimeoutException with no HTTP context. A client timeout a little shorter ends the call first, as
the HTTP client's own timeout error, which is classified TIMEOUT and retried like any other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...errors import InvalidInput

DEFAULT_TIMEOUT_S = 120.0
MARGIN_S = 5.0  # left to the job after the call times out: error handling, the failure move
MARGIN_FRACTION = 0.2  # ...but never more than this share of a short job timeout


def configured_timeout(env: Mapping[str, str]) -> float:
    """GENQUEUE_PROVIDER_TIMEOUT in seconds (a positive number), DEFAULT_TIMEOUT_S when unset."""
    raw = env.get("GENQUEUE_PROVIDER_TIMEOUT")
    if raw in (None, ""):
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"GENQUEUE_PROVIDER_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise InvalidInput(f"GENQUEUE_PROVIDER_TIMEOUT must be a positive finite number, not {raw!r}")
    return value


def effective_timeout(configured_s: float, job_timeout_s: float | None) -> float:
    """The configured timeout, or less when the job's timeout (None or <= 0: unlimited) leaves no margin."""
    if job_timeout_s is None or job_timeout_s <= 0:
        return configured_s
    margin = min(MARGIN_S, MARGIN_FRACTION * job_timeout_s)
    return min(configured_s, job_timeout_s - margin)


def current_job_timeout() -> float | None:
    """The timeout of the RQ job running in this process, if there is one."""
    from rq import get_current_job

    job = get_current_job()
    timeout = getattr(job, "timeout", None) if job is not None else None
    try:
        return None if timeout is None else float(timeout)
    except (TypeError, ValueError):
        return None


def call_timeout(configured_s: float) -> float:
    return effective_timeout(configured_s, current_job_timeout())
