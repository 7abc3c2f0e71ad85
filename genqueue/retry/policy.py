"""Backoff policy per error kind: pure arithmetic, no I/O.

delay(n) = min(cap, max(base · factor^(n−1) · (1 + U(−jitter, +jitter)), retry_after)) — the cap is a hard
bound, even over a provider's Retry-After (the decision records that it was clipped).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .kinds import ErrorKind

HOUR_S = 3600.0
DEFAULT_FACTOR = 2.0
DEFAULT_JITTER = 0.10  # ±10 %
CRASH_BUDGET = 3  # crashes retried before the job is dead-lettered with reason crash_loop


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    base_s: float = 5.0
    factor: float = DEFAULT_FACTOR
    cap_s: float = HOUR_S
    jitter: float = DEFAULT_JITTER

    def nominal(self, n: int) -> float:
        """Un-jittered delay before retry number n (1-based), already bounded by the cap."""
        if self.base_s <= 0:
            return 0.0
        n = max(1, n)
        if self.factor > 1 and (n - 1) * math.log(self.factor) > math.log(self.cap_s / self.base_s) + 1:
            return self.cap_s  # factor**(n-1) would only overflow on the way to the cap
        return min(self.cap_s, self.base_s * self.factor ** (n - 1))

    def delay_for(
        self, n: int, *, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> tuple[float, bool]:
        """(delay in seconds, clipped) for retry number n; rand() in [0, 1) draws the jitter."""
        raw = self.nominal(n) * (1 + self.jitter * (2 * rand() - 1))
        if retry_after is not None and retry_after > raw:
            raw = retry_after
        clipped = raw > self.cap_s
        return max(0.0, min(self.cap_s, raw)), clipped

    def scaled(self, scale: float) -> RetryPolicy:
        return replace(self, base_s=self.base_s * scale, cap_s=self.cap_s * scale)


DEFAULT_POLICIES: Mapping[ErrorKind, RetryPolicy] = {
    ErrorKind.TRANSIENT: RetryPolicy(max_retries=5, base_s=5.0),
    ErrorKind.RATE_LIMITED: RetryPolicy(max_retries=8, base_s=10.0),
    ErrorKind.TIMEOUT: RetryPolicy(max_retries=3, base_s=30.0),
    ErrorKind.UNKNOWN: RetryPolicy(max_retries=3, base_s=5.0),
    ErrorKind.PERMANENT: RetryPolicy(max_retries=0, base_s=0.0),
    ErrorKind.CRASH: RetryPolicy(max_retries=CRASH_BUDGET, base_s=1.0, cap_s=60.0),
}


def scaled_policies(
    scale: float, policies: Mapping[ErrorKind, RetryPolicy] = DEFAULT_POLICIES
) -> dict[ErrorKind, RetryPolicy]:
    return {kind: policy.scaled(scale) for kind, policy in policies.items()}


POLICY_FIELDS = {
    "max_retries": "max_retries",
    "max": "max_retries",
    "base": "base_s",
    "factor": "factor",
    "cap": "cap_s",
    "jitter": "jitter",
}


def override(policy: RetryPolicy, changes: Mapping[str, object]) -> RetryPolicy:
    """The policy with some fields replaced; keys: max_retries|max, base, factor, cap, jitter (seconds)."""
    updates: dict[str, Any] = {}  # field name -> a float, or an int for max_retries
    for key, raw in changes.items():
        field_name = POLICY_FIELDS.get(str(key).lower())
        if field_name is None:
            raise ValueError(f"unknown policy field {key!r} (use {', '.join(sorted(POLICY_FIELDS))})")
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"policy field {key!r} must be a number, not {raw!r}") from None
        if (
            not math.isfinite(value)
            or value < 0
            or (field_name == "factor" and value < 1)
            or (field_name == "jitter" and value > 1)
        ):
            raise ValueError(f"policy field {key!r} out of range: {raw!r}")
        updates[field_name] = int(value) if field_name == "max_retries" else value
    return replace(policy, **updates)


def parse_policy_spec(text: str) -> dict[str, str]:
    """'max=5,base=2,cap=600' → {'max': '5', 'base': '2', 'cap': '600'}."""
    spec = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"policy spec parts are key=value, not {part!r}")
        spec[key.strip()] = value.strip()
    return spec


def merged_policies(
    overrides: Mapping[str, Mapping[str, object]], base: Mapping[ErrorKind, RetryPolicy] = DEFAULT_POLICIES
) -> dict[ErrorKind, RetryPolicy]:
    """The defaults with per-kind overrides applied ({"TRANSIENT": {"max": 2}, ...})."""
    policies = dict(base)
    for kind_name, changes in overrides.items():
        try:
            kind = ErrorKind(str(kind_name).upper())
        except ValueError:
            raise ValueError(f"unknown error kind {kind_name!r}") from None
        policies[kind] = override(policies[kind], changes)
    return policies


def checked_overrides(policy: object, what: str) -> dict[str, dict[str, object]]:
    """A per-kind override ({"TRANSIENT": {"max": 2}}) from a person, checked: InvalidInput naming `what`."""
    from ..errors import InvalidInput

    if not isinstance(policy, Mapping) or not all(isinstance(v, Mapping) for v in policy.values()):
        raise InvalidInput(f'{what} must be an object of kinds, e.g. {{"TRANSIENT": {{"max": 2, "base": 1}}}}')
    try:
        merged_policies(policy)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    return {str(k).upper(): dict(v) for k, v in policy.items()}
