"""A successful answer can still say the limit is spent: the providers read its limit headers.

OpenAI's `x-ratelimit-remaining-requests: 0` with `x-ratelimit-reset-requests: 6s` (or tokens, or
Anthropic's `anthropic-ratelimit-*-remaining`/`-reset`; retry/headers.py reads them all) means the next
call within 6 s would be a 429. The job's limit key is paused until the latest such reset
(`genqueue.current().pause_key`), so the key's next jobs park instead of calling.
"""

from __future__ import annotations

from typing import Any

from ...retry.headers import reset_wait
from ..context import current


def pause_if_spent(headers: Any) -> float | None:
    """Pause the running job's limit key until the latest reset among the exhausted limits the headers
    report; returns that wait in seconds, None when no limit is exhausted (or outside a task)."""
    wait = reset_wait(headers)
    ctx = current()
    if wait is None or ctx is None:
        return None
    if wait > 0:
        ctx.pause_key(wait)
    return wait
