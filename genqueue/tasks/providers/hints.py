"""Retry hints in a provider's error response, made readable to genqueue's classifier.

The classifier (genqueue/retry/classify.py) reads an exception's `status_code`, its `retry_after`, a
`Retry-After` header in `exc.response.headers` or `exc.headers`, and an explicit `genqueue_kind`. Two
headers OpenAI-style APIs send are not among those, so providers translate them onto the exception:

- `retry-after-ms` (milliseconds; preferred over Retry-After, as the openai SDK does) → `retry_after`;
- `x-should-retry: false` → `genqueue_kind = PERMANENT` (the server says a retry cannot succeed, e.g. a
  429 for an exhausted quota); `true` on a status the classifier would call permanent → `TRANSIENT`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 415, 422})


def retry_after_ms(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a `retry-after-ms` header; None when absent or not a finite non-negative number."""
    raw = _get(headers, "retry-after-ms")
    if raw is None:
        return None
    try:
        value = float(raw) / 1000
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def kind_from_should_retry(headers: Mapping[str, str] | None, status_code: int | None) -> str | None:
    flag = (_get(headers, "x-should-retry") or "").strip().lower()
    if flag == "false":
        return "PERMANENT"
    if flag == "true" and status_code in PERMANENT_STATUSES:
        return "TRANSIENT"
    return None


def annotate(exc: BaseException, headers: Mapping[str, str] | None, status_code: int | None) -> BaseException:
    """Set `retry_after` and `genqueue_kind` on `exc` from the response headers; returns `exc`."""
    seconds = retry_after_ms(headers)
    if seconds is not None:
        exc.retry_after = seconds  # type: ignore[attr-defined]
    kind = kind_from_should_retry(headers, status_code)
    if kind is not None:
        exc.genqueue_kind = kind  # type: ignore[attr-defined]
    return exc


def _get(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):  # a plain dict: match the name in any case
            value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    except (AttributeError, TypeError):
        return None
    return None if value is None else str(value)
