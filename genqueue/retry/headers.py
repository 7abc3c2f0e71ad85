"""What a provider's response headers say about waiting: pure parsers, no Redis, no SDK.

Two families, read alike from a 429 (the classifier's retry_after, when there is no Retry-After) and from a
successful answer (the provider adapters' `genqueue.current().pause_key`):

- **Retry-After**: `retry-after-ms` (milliseconds; OpenAI, Anthropic), `Retry-After` (seconds, or an HTTP
  date). The server's own word: it wins over the limits below.
- **Limit state**: for each limit the provider reports, how much is left and when it resets. A limit whose
  remaining count is 0 is exhausted, and the key must wait for its reset; with several exhausted (requests
  and tokens), for the latest. Names, matched case-insensitively, a remaining header paired with the reset
  header of the same name with `remaining` replaced by `reset`:

  - OpenAI (and Groq, Azure OpenAI, OpenRouter…): `x-ratelimit-remaining-requests` (`-tokens`, …) with
    `x-ratelimit-reset-requests`, a Go duration: `1s`, `6m0s`, `20ms`, `1h2m3.5s` (Azure: seconds);
  - Anthropic: `anthropic-ratelimit-requests-remaining` (`-tokens-`, `-input-tokens-`, `-output-tokens-`;
    `anthropic-priority-…`) with `…-reset`, an RFC 3339 time: `2025-10-25T12:01:00Z`;
  - the IETF draft and GitHub style: `ratelimit-remaining` / `x-ratelimit-remaining` with `ratelimit-reset` /
    `x-ratelimit-reset`: seconds, or a Unix time when ≥ 10⁹.

  A remaining of -1 (Azure's "not applicable") or any other non-zero value is not exhausted; an exhausted
  limit without a readable reset says nothing (it is skipped).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

UNIX_TIME_FROM = 1e9  # a bare reset number this large is a Unix time (2001-09-09 on), not a delay
LIMIT_FAMILIES = ("ratelimit", "rate-limit", "anthropic-")  # a `remaining` header of one of these is a limit's
GO_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(rf"(?:{_GO_PART.pattern})+")


def header(headers: Any, name: str) -> Any:
    """One header's value, its name matched case-insensitively (httpx/requests headers, or a plain dict)."""
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except (AttributeError, TypeError):
        return None
    if value is not None:
        return value
    lowered = name.lower()
    try:
        return next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    except (AttributeError, TypeError):
        return None


def seconds(value: Any) -> float | None:
    """A non-negative, finite number of seconds from a number or a numeric string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); None for garbage or negatives."""
    number = seconds(value)
    if number is not None or not isinstance(value, str):
        return number
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - _now(now))


def parse_go_duration(value: Any) -> float | None:
    """Seconds from a Go duration string (`1s`, `6m0s`, `20ms`, `1h2m3.5s`, a bare `0`); None otherwise."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(text):
        return None
    return sum(float(n) * GO_UNITS_S[unit] for n, unit in _GO_PART.findall(text))


def parse_reset(value: Any, *, now: float | None = None) -> float | None:
    """Seconds until a limit resets, from any of the forms providers send: a Go duration, seconds (a Unix
    time when ≥ 10⁹), an RFC 3339 time (no offset: UTC). 0 for a time already past; None for garbage."""
    number = seconds(value)
    if number is not None:
        return max(0.0, number - _now(now)) if number >= UNIX_TIME_FROM else number
    duration = parse_go_duration(value)
    if duration is not None:
        return duration
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - _now(now))


def _items(headers: Any) -> list[tuple[str, Any]]:
    try:
        return [(str(k).lower(), v) for k, v in headers.items()]
    except (AttributeError, TypeError):
        return []


def exhausted_limits(headers: Any, *, now: float | None = None) -> dict[str, float]:
    """{remaining header: seconds until its reset} for every limit whose remaining count is 0."""
    pairs = dict(_items(headers))
    out: dict[str, float] = {}
    for name, value in pairs.items():
        if "remaining" not in name or not any(family in name for family in LIMIT_FAMILIES):
            continue
        left = seconds(value)  # a count, read like seconds: a non-negative number, else nothing
        if left is None or left != 0:
            continue
        wait = parse_reset(pairs.get(name.replace("remaining", "reset")), now=now)
        if wait is not None:
            out[name] = wait
    return out


def reset_wait(headers: Any, *, now: float | None = None) -> float | None:
    """How long the key must wait by its limit headers alone: the latest reset among the exhausted limits;
    None when no limit is exhausted (or none of the exhausted ones says when it resets)."""
    waits = exhausted_limits(headers, now=now)
    return max(waits.values()) if waits else None


def wait_from_headers(headers: Any, *, now: float | None = None) -> float | None:
    """How long the key must wait: `retry-after-ms`, else `Retry-After`, else the latest reset among the
    exhausted limits; None when the headers say nothing (a garbage value is skipped, not an answer)."""
    ms = seconds(header(headers, "retry-after-ms"))
    if ms is not None:
        return ms / 1000
    after = parse_retry_after(header(headers, "retry-after"), now=now)
    if after is not None:
        return after
    return reset_wait(headers, now=now)
