"""Limits, the pure part: what a limit declaration means, rates, key templates. No Redis here.

A limit key names what jobs share: `openai:gpt-image-1`, `lab`, or a template over a task's kwargs
(`"openai:{model}"`). Its limits are a concurrency cap (slots with leases, so a dead worker's slot comes
back), an exact request rate (N per period: a sliding log, not an approximation), a max_wait (how long
rate limits may hold one job back before it is dead-lettered `rate_limit_wait_exceeded`) and the breaker's
cooldown (how long a key stays open after a storm of TRANSIENT/TIMEOUT failures; 0 turns the breaker off).

The breaker's rule is LiteLLM's router cooldown: more than half of the calls answered in the last minute
failed, and at least BREAKER_MIN_CALLS of them. Then the key's jobs park for the cooldown; one probe goes;
its success closes the key, its failure opens it again for twice as long (at most 5 min).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput

RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*\.?[0-9]*)\s*(ms|s|sec|second|m|min|minute|h|hour)s?\s*")
UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "second": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
}
KEY = re.compile(r"[A-Za-z0-9_.:/@+-]{1,200}")
UNITS = ("tokens", "images", "usd")  # what a unit limit may meter (usage keys' units: tokens = input + output)
LIMIT_FIELDS = ("concurrency", "rate", "max_wait", "cooldown", *UNITS)
UNIT_LIMIT = re.compile(r"\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*([kKM]?)\s*/\s*([0-9]*)\s*(s|m|h|d)\s*")
UNIT_WINDOW_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
SUFFIX = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000}
MAX_UNIT_AMOUNT = 1e12  # tokens, images or dollars per window
MAX_UNIT_WINDOW_MS = 7 * 86_400_000
BREAKER_MIN_CALLS = 5  # answered calls in the last minute before the failure share can open a key
DEFAULT_COOLDOWN_S = 30.0
LEASE_MARGIN_S = 30  # a slot outlives its job's timeout by this much, then a dead holder's slot is reclaimed
# The bounds of a limit's values (a declaration, `genqueue limits set`, GENQUEUE_BREAKER_COOLDOWN): beyond
# them a value is a typo or an attack (`--concurrency 1e23`, `--rate 1/999999999999999999h` parks forever).
MAX_CONCURRENCY = 100_000
MAX_RATE_N = 1_000_000  # calls per period
MAX_RATE_PERIOD_MS = 86_400_000  # 1 day
MAX_WAIT_BOUND_S = 86_400.0  # max_wait: 1 day; a key's pause never exceeds its job's max_wait (1 h by default)
MAX_COOLDOWN_S = 3_600.0  # the breaker's cooldown: 1 h
IDLE_TTL_S = 3_600  # a key's state (no override) expires this long after its last claim (or a parked job's wait)


@dataclass(frozen=True, slots=True)
class Rate:
    n: int
    period_ms: int

    def __str__(self) -> str:
        for unit, ms in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if self.period_ms % ms == 0:
                count = self.period_ms // ms
                return f"{self.n}/{'' if count == 1 else count}{unit}"
        return f"{self.n}/{self.period_ms}ms"


def parse_rate(text: str) -> Rate:
    """'5/s', '300/m', '10/2s', '1000/h' → Rate; InvalidInput otherwise."""
    match = RATE.fullmatch(str(text))
    if not match:
        raise InvalidInput(f"rate must look like 5/s, 300/m or 10/2s, not {text!r}")
    n, count, unit = int(match[1]), float(match[2] or 1), match[3]
    period = count * UNIT_MS[unit]
    if n < 1 or period < 1:
        raise InvalidInput(f"rate {text!r} must allow at least 1 call per positive period")
    if n > MAX_RATE_N or period > MAX_RATE_PERIOD_MS:
        raise InvalidInput(f"rate {text!r} is out of bounds: at most {MAX_RATE_N} calls, per a period of at most 24h")
    return Rate(n, int(period))


@dataclass(frozen=True, slots=True)
class UnitLimit:
    """At most `amount` of a unit (tokens, images, usd) per sliding window of `window_ms`."""

    amount: float
    window_ms: int

    def __str__(self) -> str:
        amount = self.amount
        text = f"{amount:g}"
        for suffix, factor in (("M", 1_000_000), ("k", 1_000)):
            if amount >= factor and (amount / factor) == int(amount / factor):
                text = f"{int(amount // factor)}{suffix}"
                break
        for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if self.window_ms % ms == 0:
                count = self.window_ms // ms
                return f"{text}/{'' if count == 1 else count}{unit}"
        return f"{text}/{self.window_ms / 1000:g}s"


def parse_unit_limit(text: Any, unit: str = "unit") -> UnitLimit:
    """'90k/m', '50/m', '200/d', '1.5M/h', '2000/10s' → UnitLimit; InvalidInput otherwise. The suffix k is
    thousands and M millions; the window is s, m, h or d, with an optional count."""
    match = UNIT_LIMIT.fullmatch(str(text)) if isinstance(text, (str, int, float)) else None
    if not match or isinstance(text, bool):
        raise InvalidInput(f"{unit} limit must look like 90k/m, 50/m, 200/d or 1.5M/h, not {text!r}")
    amount = float(match[1]) * SUFFIX[match[2]]
    window = int(match[3] or 1) * UNIT_WINDOW_MS[match[4]]
    if not 0 < amount <= MAX_UNIT_AMOUNT or not 0 < window <= MAX_UNIT_WINDOW_MS:
        raise InvalidInput(
            f"{unit} limit {text!r} is out of bounds: a positive amount up to {MAX_UNIT_AMOUNT:g} per a window up to 7d"
        )
    return UnitLimit(amount, window)


def check_amounts(raw: Any, what: str) -> dict[str, float]:
    """A usage or an estimate: {unit: amount >= 0} over UNITS (and input_tokens/output_tokens for a usage)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{what} must be a mapping of unit to amount, not {type(raw).__name__}")
    out: dict[str, float] = {}
    for unit, value in raw.items():
        if unit not in UNITS:
            raise InvalidInput(f"{what}: unknown unit {unit!r}; use {', '.join(UNITS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_UNIT_AMOUNT:
            raise InvalidInput(f"{what}: {unit} must be a number from 0 to {MAX_UNIT_AMOUNT:g}, not {value!r}")
        if value:
            out[unit] = float(value)
    return out


def over_limit(estimate: Mapping[str, float], units: Mapping[str, UnitLimit]) -> str | None:
    """The first unit whose estimate alone exceeds its limit (such a job could never run): a message, or None."""
    for unit, limit in units.items():
        amount = estimate.get(unit, 0.0)
        if amount > limit.amount:
            return f"its {unit} estimate {amount:g} exceeds the limit {limit} alone: it could never run"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int | None = None
    rate: Rate | None = None
    max_wait_s: float | None = None
    cooldown_s: float | None = None
    units: Mapping[str, UnitLimit] = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Limits:
        """From a task declaration or the CLI:
        {"concurrency": 3, "rate": "5/s", "max_wait": 3600, "cooldown": "30s", "tokens": "90k/m",
        "images": "50/m", "usd": "200/d"}."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(LIMIT_FIELDS))
        if unknown:
            raise InvalidInput(f"unknown limit field(s) {', '.join(unknown)}; use {', '.join(LIMIT_FIELDS)}")
        concurrency = raw.get("concurrency")
        if concurrency is not None:
            check_concurrency(concurrency)
        max_wait = duration_s(raw.get("max_wait"), "max_wait", zero=False, most=MAX_WAIT_BOUND_S)
        cooldown = duration_s(raw.get("cooldown"), "cooldown", zero=True, most=MAX_COOLDOWN_S)
        rate = raw.get("rate")
        units = {unit: parse_unit_limit(raw[unit], unit) for unit in UNITS if raw.get(unit) is not None}
        return cls(concurrency, parse_rate(rate) if rate is not None else None, max_wait, cooldown, units)

    def cooldown_ms(self) -> int:
        return int((DEFAULT_COOLDOWN_S if self.cooldown_s is None else self.cooldown_s) * 1000)

    def args(self) -> list[int]:
        """The declared defaults as the Lua scripts take them: cap, rate n, rate period ms (0: none)."""
        return [self.concurrency or 0, self.rate.n if self.rate else 0, self.rate.period_ms if self.rate else 0]

    def unit_args(self) -> list[Any]:
        """The declared unit limits as limits.lua's lim_acquire takes them: per unit in UNITS, amount and
        window ms (0 0: none)."""
        out: list[Any] = []
        for unit in UNITS:
            limit = self.units.get(unit)
            out += [limit.amount, limit.window_ms] if limit else [0, 0]
        return out


def check_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidInput(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, not {value!r}")
    return value


def duration_s(value: Any, name: str, *, zero: bool, most: float = MAX_COOLDOWN_S) -> float | None:
    """A duration field: seconds as a number, or "30s" / "1h", at most `most`; None when absent."""
    if value is None:
        return None
    from ..support.durations import parse_duration

    try:
        seconds = parse_duration(value).total_seconds() if isinstance(value, str) else value
    except InvalidInput:
        seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0 or (seconds == 0 and not zero):
        raise InvalidInput(f"{name} must be a {'' if zero else 'positive '}duration like 30s or 5m, not {value!r}")
    if not seconds <= most:  # NaN too
        raise InvalidInput(f"{name} must be at most {most:g} seconds, not {value!r}")
    return float(seconds)


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """What a release script reports when it changed a key's breaker: one log line each."""

    what: str  # opened | reopened | closed | tenant_opened
    failed: int = 0
    calls: int = 0
    cooldown_s: float = 0.0


def parse_event(raw: str | bytes | None) -> BreakerEvent | None:
    """`opened:<failed>:<calls>:<cooldown ms>`, `reopened:…`, `closed` (limits.lua) → BreakerEvent; '' → None."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
    if not text:
        return None
    what, *rest = text.split(":")
    if what not in ("opened", "reopened", "closed", "tenant_opened"):
        return None
    numbers = [int(x) for x in rest[:3]] + [0, 0, 0]
    return BreakerEvent(what, numbers[0], numbers[1], numbers[2] / 1000)


def breaker_verdict(calls: int, fails: int, tenant_calls: int, tenant_fails: int, tenant: str, min_calls: int) -> str:
    """Whose storm a TRANSIENT/TIMEOUT failure of `tenant` is, from the last minute's answered calls of the
    key (calls, fails) and of the tenant alone: "key" (the key opens for everyone: more than half of at least
    `min_calls` calls failed, and not the tenant's alone — the other tenants' calls fail too), "tenant" (only
    this tenant's jobs park: more than half of at least `min_calls` of its own calls failed), or "". Jobs
    without a tenant ("-") count as the key's. limits.lua's lim_breaker_rule is this rule, in Lua."""
    key_storm = calls >= min_calls and fails * 2 > calls
    if tenant in ("-", ""):
        return "key" if key_storm else ""
    others_calls, others_fails = calls - tenant_calls, fails - tenant_fails
    if key_storm and others_fails >= 1 and others_fails * 2 > others_calls:
        return "key"
    if tenant_calls >= min_calls and tenant_fails * 2 > tenant_calls:
        return "tenant"
    return ""


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise InvalidInput(f"invalid limit key {key!r}: 1-200 of A-Z a-z 0-9 _ . : / @ + -")
    return key


def template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise InvalidInput(f"limit_key template {template!r}: {exc}") from None


def render_key(template: str, kwargs: Mapping[str, Any]) -> str:
    """The limit key of one call: `"openai:{model}"` with model="gpt-image-1" → `openai:gpt-image-1`."""
    values = {name: kwargs.get(name, "") for name in template_fields(template)}
    try:
        key = template.format_map({k: "" if v is None else str(v) for k, v in values.items()})
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:  # "{0}", "{model.x}", "{m:d}"
        raise InvalidInput(f"limit_key template {template!r} does not render: {type(exc).__name__}") from None
    return check_key(key or "default")


def generate_key(provider: str, payload: Mapping[str, Any]) -> str:
    """The built-in generate task's key: `<provider>:<model>`, e.g. `simulated:sim-image-1`."""
    model = payload.get("model") if isinstance(payload, Mapping) else None
    safe = re.sub(r"[^A-Za-z0-9_.:/@+-]", "_", str(model or "default"))[:150]
    return f"{provider}:{safe}"


def lease_ms(timeout_s: int | None) -> int:
    return int(((timeout_s or 180) + LEASE_MARGIN_S) * 1000)
