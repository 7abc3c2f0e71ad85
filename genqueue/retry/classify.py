"""Error classification: an ordered table of pure rules, first match wins.

Order (docs/concepts/retries.md, "Classification rules"): user rules → explicit kind → timeouts → out-of-credit body
codes → the server's x-should-retry header → HTTP status → connection errors → validation errors → a timeout
or connection error behind the exception (its __cause__/__context__ chain) → message patterns → UNKNOWN.

A rule is any callable taking the exception and returning an ErrorKind, a Verdict (a kind with a delay and
a note) or None. The provider SDKs are optional: their classes are matched by type name and their errors read
by duck typing (`.status_code`, `.response.headers`, `.body`, `.details`), so none of them is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..support.safe_text import safe_str
from .headers import header, parse_retry_after, reset_wait
from .headers import seconds as _seconds
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
        "APITimeoutError",  # openai, anthropic (their APIConnectionError's subclass)
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
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 413, 415, 422})
# Body error codes that mean "out of credits": retrying cannot help until someone pays. By code only: Gemini's
# retryable per-minute quota 429 has the same words ("You exceeded your current quota") as OpenAI's.
OUT_OF_CREDIT_CODES = frozenset({"insufficient_quota"})
CAUSE_DEPTH = 8  # links of the __cause__/__context__ chain looked at


def _type_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status from `.status_code`, `.status`, `.response.status_code` (or `.status`), else `.code`
    (Gemini's APIError, urllib's HTTPError); strings are accepted, values outside 100–599 are not."""
    candidates = [getattr(exc, "status_code", None), getattr(exc, "status", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        candidates += [getattr(response, "status_code", None), getattr(response, "status", None)]
    candidates.append(getattr(exc, "code", None))
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


def headers_of(exc: BaseException) -> Any:
    """The response headers: `exc.response.headers`, else `exc.headers`; None when there are none."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers or getattr(exc, "headers", None) or headers


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_duration(value: Any) -> float | None:
    """A google.protobuf.Duration as JSON ("37s", "1.5s") or as {"seconds": …, "nanos": …}, in seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, Mapping) and ("seconds" in value or "nanos" in value):
        seconds, nanos = _seconds(value.get("seconds") or 0), _seconds(value.get("nanos") or 0)
        return None if seconds is None or nanos is None else seconds + nanos / 1e9
    return None


def _bodies(exc: BaseException) -> Iterator[Mapping[str, Any]]:
    """The decoded error bodies an SDK kept: openai/anthropic `.body`, Gemini's `.details` (dicts only)."""
    for attr in ("body", "details"):
        body = getattr(exc, attr, None)
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        if isinstance(body, Mapping):
            yield body
            inner = body.get("error")
            if isinstance(inner, Mapping):
                yield inner


def retry_info_delay(exc: BaseException) -> Any:
    """The raw `retryDelay` of a google.rpc.RetryInfo in the error body's `details` (Gemini's 429), or None."""
    for body in _bodies(exc):
        details = body.get("details")
        if not isinstance(details, list):
            continue
        for detail in details:
            if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                return detail.get("retryDelay")
    return None


# Where a delay is read from, in order (retry_after_from takes the first valid one): (raw value, parser).
def _retry_after_sources(exc: BaseException) -> Iterator[tuple[Any, Callable[[Any], float | None]]]:
    yield getattr(exc, "retry_after", None), parse_retry_after
    headers = headers_of(exc)
    ms = header(headers, "retry-after-ms")
    yield ms, lambda raw: None if (s := _seconds(raw)) is None else s / 1000
    yield header(headers, "retry-after"), parse_retry_after
    yield retry_info_delay(exc), parse_duration
    if status_code_of(exc) == 429:  # the limits' own headers (retry/headers.py): a 429 that said nothing else
        yield reset_wait(headers), _seconds


def retry_after_from(exc: BaseException) -> tuple[float | None, Any]:
    """(seconds, None) from the first valid source — the exception's `retry_after`, a `retry-after-ms`
    header, a `Retry-After` header (seconds or HTTP date), a google.rpc.RetryInfo `retryDelay` in the body,
    and for a 429 the latest reset among its exhausted limits (`x-ratelimit-remaining-*: 0` with
    `x-ratelimit-reset-*`, Anthropic's `anthropic-ratelimit-*-remaining`/`-reset`) — or (None, the first raw
    value that was present but garbage), or (None, None) when there was none."""
    bad = None
    for raw, parse in _retry_after_sources(exc):
        if raw is None:
            continue
        seconds = parse(raw)
        if seconds is not None:
            return seconds, None
        if bad is None:
            bad = raw
    return None, bad


def retry_after_of(exc: BaseException) -> float | None:
    return retry_after_from(exc)[0]


def causes(exc: BaseException, depth: int = CAUSE_DEPTH) -> Iterator[BaseException]:
    """The exceptions behind exc, nearest first, the way Python's traceback follows them: `__cause__`
    (raise … from …), else `__context__` unless suppressed (raise … from None). Bounded, cycle-safe."""
    seen = {id(exc)}
    current = exc
    for _ in range(depth):
        nxt = current.__cause__
        if nxt is None and not current.__suppress_context__:
            nxt = current.__context__
        if nxt is None or id(nxt) in seen:
            return
        seen.add(id(nxt))
        yield nxt
        current = nxt


# The clients whose own retries include a 409 (OpenAI's and Anthropic's: their lock timeouts); for every other
# client (google-genai, replicate, httpx, requests) and for HTTP itself a 409 Conflict is final.
RETRIES_409_MODULES = ("openai", "anthropic")


def _retries_409(exc: BaseException | None) -> bool:
    module = type(exc).__module__ if exc is not None else ""
    return any(module == m or module.startswith(m + ".") for m in RETRIES_409_MODULES)


def _status_kind(code: int | None, exc: BaseException | None = None) -> ErrorKind | None:
    if code is None:
        return None
    if code == 429:
        return ErrorKind.RATE_LIMITED
    if code == 408:
        return ErrorKind.TIMEOUT
    if code == 409:
        return ErrorKind.TRANSIENT if _retries_409(exc) else ErrorKind.PERMANENT
    if code >= 500:
        return ErrorKind.TRANSIENT
    if code in PERMANENT_STATUSES:
        return ErrorKind.PERMANENT
    return None


def _error_codes(exc: BaseException) -> Iterator[str]:
    """The provider's error code/type strings: openai's `.code`/`.type`, else the body's (error.)code/type."""
    for value in (getattr(exc, "code", None), getattr(exc, "type", None)):
        if isinstance(value, str):
            yield value
    for body in _bodies(exc):
        for key in ("code", "type"):
            value = body.get(key)
            if isinstance(value, str):
                yield value


# --- the rules -------------------------------------------------------------------------------------------


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


def out_of_credit_rule(exc: BaseException) -> Verdict | None:
    """OpenAI's insufficient_quota (a 429 whose body's error code/type says the account is out of credits)."""
    code = next((c for c in _error_codes(exc) if c in OUT_OF_CREDIT_CODES), None)
    if code is None:
        return None
    return Verdict(ErrorKind.PERMANENT, note=f"{code}: out of credits, not retried")


def should_retry_header_rule(exc: BaseException) -> ErrorKind | Verdict | None:
    """The server's own `x-should-retry: true|false` (OpenAI, Anthropic; their SDKs obey it first)."""
    value = header(headers_of(exc), "x-should-retry")
    flag = str(value).strip().lower() if value is not None else None
    if flag == "false":
        return Verdict(ErrorKind.PERMANENT, note="not retried: the server said x-should-retry: false")
    if flag == "true":
        kind = _status_kind(status_code_of(exc), exc)
        if kind in (ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT, ErrorKind.TRANSIENT):
            return kind
        return Verdict(ErrorKind.TRANSIENT, note="retried: the server said x-should-retry: true")
    return None


def http_status_rule(exc: BaseException) -> ErrorKind | None:
    return _status_kind(status_code_of(exc), exc)


def connection_rule(exc: BaseException) -> ErrorKind | None:
    return ErrorKind.TRANSIENT if _type_names(exc) & CONNECTION_TYPE_NAMES else None


def validation_rule(exc: BaseException) -> ErrorKind | None:
    return ErrorKind.PERMANENT if _type_names(exc) & VALIDATION_TYPE_NAMES else None


def cause_rule(exc: BaseException) -> ErrorKind | None:
    """A timeout or connection error behind a wrapper (openai/anthropic APIConnectionError from httpx's
    ConnectError, a provider error raised `from` a socket error): the nearest one decides."""
    for cause in causes(exc):
        names = _type_names(cause)
        if names & TIMEOUT_TYPE_NAMES:
            return ErrorKind.TIMEOUT
        if names & CONNECTION_TYPE_NAMES:
            return ErrorKind.TRANSIENT
    return None


def message_rule(patterns: Sequence[tuple[str, ErrorKind]]) -> Rule:
    compiled = [(re.compile(p, re.IGNORECASE), kind) for p, kind in patterns]

    def rule(exc: BaseException) -> ErrorKind | None:
        text = safe_str(exc)
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

BUILTIN_RULES: tuple[Rule, ...] = (
    explicit_rule,
    timeout_rule,
    out_of_credit_rule,
    should_retry_header_rule,
    http_status_rule,
    connection_rule,
    validation_rule,
    cause_rule,
)


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

    def __init__(
        self, rules: Iterable[Rule] = (), patterns: Sequence[tuple[str, ErrorKind]] = DEFAULT_MESSAGE_PATTERNS
    ):
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
