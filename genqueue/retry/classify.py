"""Error classification: an ordered table of pure rules, first match wins.

Order (the design's): explicit kind → timeouts → HTTP status → connection errors → validation errors →
message patterns → UNKNOWN. User rules run before all of these. A rule is any callable taking the
exception and returning an ErrorKind, a Verdict (a kind with a delay and a note) or None. Timeout and
HTTP-client classes are matched by type name so no HTTP library becomes a dependency.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .kinds import ErrorKind


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's answer when a bare ErrorKind is not enough.

    retry_after: seconds to wait, used exactly like a Retry-After header (and over one): RATE_LIMITED
    waits min(cap, max(backoff, retry_after)). note: why, put in front of the failure's message."""

    kind: ErrorKind
    retry_after: float | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ErrorKind(str(self.kind).upper()))
        if self.retry_after is not None:
            seconds = parse_retry_after(self.retry_after)
            if seconds is None:
                raise ValueError(f"Verdict.retry_after must be seconds >= 0, not {self.retry_after!r}")
            object.__setattr__(self, "retry_after", seconds)


Rule = Callable[[BaseException], ErrorKind | Verdict | None]

TIMEOUT_TYPE_NAMES = frozenset(
    {
        "JobTimeoutException",  # rq
        "TimeoutError",
        "timeout",  # socket.timeout
        "ReadTimeout",
        "ConnectTimeout",
        "Timeout",  # requests
        "TimeoutException",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "PoolTimeout",
        "WriteTimeout",  # httpx / urllib3
        "ServerTimeoutError",  # aiohttp
    }
)
CONNECTION_TYPE_NAMES = frozenset(
    {
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "ConnectError",
        "RemoteProtocolError",
        "ProtocolError",
        "NewConnectionError",
        "ClientConnectionError",
        "ServerDisconnectedError",
    }
)
VALIDATION_TYPE_NAMES = frozenset({"ValueError", "TypeError", "ValidationError", "KeyError", "JSONDecodeError"})
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 415, 422})


def _type_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status from `.status_code`, `.status` or `.response.status_code`; strings are accepted."""
    candidates = [getattr(exc, "status_code", None), getattr(exc, "status", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        candidates += [getattr(response, "status_code", None), getattr(response, "status", None)]
    for value in candidates:
        if isinstance(value, bool):
            continue
        try:
            code = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if 100 <= code <= 599:
            return code
    return None


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); None for garbage or negatives."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 and value == value and value != float("inf") else None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if seconds != seconds or seconds in (float("inf"),) or seconds < 0:
        return None
    return seconds


def retry_after_of(exc: BaseException) -> float | None:
    return parse_retry_after(raw_retry_after(exc))


def raw_retry_after(exc: BaseException) -> Any:
    """The unparsed Retry-After: the exception's `retry_after`, else a `Retry-After` response header."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
        if headers is not None:
            try:
                value = headers.get("Retry-After") or headers.get("retry-after")
            except (AttributeError, TypeError):
                value = None
    return value


def explicit_rule(exc: BaseException) -> ErrorKind | None:
    kind = getattr(exc, "genqueue_kind", None)
    if kind is None:
        return None
    try:
        return ErrorKind(str(kind).upper())
    except ValueError:
        return None


def timeout_rule(exc: BaseException) -> ErrorKind | None:
    return ErrorKind.TIMEOUT if _type_names(exc) & TIMEOUT_TYPE_NAMES else None


def http_status_rule(exc: BaseException) -> ErrorKind | None:
    code = status_code_of(exc)
    if code is None:
        return None
    if code == 429:
        return ErrorKind.RATE_LIMITED
    if code == 408:
        return ErrorKind.TIMEOUT
    if code >= 500:
        return ErrorKind.TRANSIENT
    if code in PERMANENT_STATUSES:
        return ErrorKind.PERMANENT
    return None


def connection_rule(exc: BaseException) -> ErrorKind | None:
    return ErrorKind.TRANSIENT if _type_names(exc) & CONNECTION_TYPE_NAMES else None


def validation_rule(exc: BaseException) -> ErrorKind | None:
    return ErrorKind.PERMANENT if _type_names(exc) & VALIDATION_TYPE_NAMES else None


def message_rule(patterns: Sequence[tuple[str, ErrorKind]]) -> Rule:
    compiled = [(re.compile(p, re.IGNORECASE), kind) for p, kind in patterns]

    def rule(exc: BaseException) -> ErrorKind | None:
        text = str(exc)
        for pattern, kind in compiled:
            if pattern.search(text):
                return kind
        return None

    return rule


DEFAULT_MESSAGE_PATTERNS: tuple[tuple[str, ErrorKind], ...] = (
    (r"rate.?limit|too many requests", ErrorKind.RATE_LIMITED),
    (r"temporar(y|ily) unavailable|overloaded|try again", ErrorKind.TRANSIENT),
    (r"timed? ?out", ErrorKind.TIMEOUT),
)

BUILTIN_RULES: tuple[Rule, ...] = (explicit_rule, timeout_rule, http_status_rule, connection_rule, validation_rule)


def as_verdict(result: Any, rule: Rule | None = None) -> Verdict | None:
    """A rule's answer as a Verdict: None stays None, an ErrorKind (or its name) becomes Verdict(kind)."""
    if result is None or isinstance(result, Verdict):
        return result
    if isinstance(result, str):
        try:
            return Verdict(ErrorKind(result.upper()))
        except ValueError:
            pass
    name = getattr(rule, "__qualname__", None) or repr(rule)
    raise TypeError(f"classification rule {name} returned {result!r}: return an ErrorKind, a Verdict or None")


class Classifier:
    """User rules first, then the built-in table, then message patterns; UNKNOWN when nothing matches."""

    def __init__(self, rules: Iterable[Rule] = (), patterns: Sequence[tuple[str, ErrorKind]] = DEFAULT_MESSAGE_PATTERNS):
        self.rules: list[Rule] = [*rules, *BUILTIN_RULES, message_rule(patterns)]

    def add_rule(self, rule: Rule) -> Rule:
        """Prepend a user rule (usable as a decorator); later additions take precedence over earlier ones."""
        self.rules.insert(0, rule)
        return rule

    def verdict(self, exc: BaseException) -> Verdict:
        """The first rule's answer (kind, and any delay and note it gave); Verdict(UNKNOWN) when none."""
        for rule in self.rules:
            verdict = as_verdict(rule(exc), rule)
            if verdict is not None:
                return verdict
        return Verdict(ErrorKind.UNKNOWN)

    def classify(self, exc: BaseException) -> ErrorKind:
        return self.verdict(exc).kind
