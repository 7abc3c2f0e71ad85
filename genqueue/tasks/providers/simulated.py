"""A provider that fails on demand, like real image/LLM APIs do.

Per payload: `"simulate": [outcome, ...]`, outcome i for attempt i, the last one repeating. Otherwise each
attempt draws an outcome from the configured rates (GENQUEUE_SIM_RATES, e.g. "429=0.08,500=0.04"),
seeded by job id and attempt so a run is reproducible.

Outcomes: ok, 429, 429:retry_after=N, 500, 502, 503, timeout, reset, 401, 422, crash (the work horse
SIGKILLs itself), sleep=N (sleep N seconds, then succeed).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInput

STATUS_OUTCOMES = {"429", "500", "502", "503", "401", "422"}
PLAIN_OUTCOMES = {"ok", "timeout", "reset", "crash"}
DEFAULT_RATES: dict[str, float] = {
    "429:retry_after=1": 0.07,
    "500": 0.04,
    "502": 0.03,
    "503": 0.03,
    "timeout": 0.04,
    "reset": 0.04,
    "401": 0.015,
    "422": 0.02,
    "crash": 0.01,
}
DEFAULT_LATENCY_S = 0.05


class ProviderError(Exception):
    """An HTTP error from the provider, shaped like an HTTP client's (status_code, headers)."""

    def __init__(self, status_code: int, message: str, *, retry_after: float | None = None):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = {} if retry_after is None else {"Retry-After": str(retry_after)}


class ProviderTimeout(TimeoutError):
    pass


MESSAGES = {
    429: "rate limit exceeded for model",
    500: "internal server error",
    502: "bad gateway",
    503: "service temporarily unavailable",
    401: "invalid API key",
    422: "prompt rejected by content policy",
}


@dataclass(frozen=True)
class Outcome:
    name: str
    retry_after: float | None = None
    sleep_s: float = 0.0


def parse_outcome(text: Any) -> Outcome:
    if not isinstance(text, (str, int)):
        raise InvalidInput(f"simulate outcome must be a string, not {text!r}")
    text = str(text).strip().lower()
    if text in PLAIN_OUTCOMES or text in STATUS_OUTCOMES:
        return Outcome(text)
    if text.startswith("429:retry_after="):
        return Outcome("429", retry_after=_number(text.split("=", 1)[1], text))
    if text.startswith("sleep="):
        return Outcome("sleep", sleep_s=_number(text.split("=", 1)[1], text))
    raise InvalidInput(f"unknown simulate outcome {text!r}")


def _number(raw: str, whole: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"bad number in simulate outcome {whole!r}") from None
    if value < 0:
        raise InvalidInput(f"negative number in simulate outcome {whole!r}")
    return value


def parse_outcomes(value: Any) -> list[Outcome]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("payload.simulate must be a non-empty list of outcomes")
    return [parse_outcome(v) for v in value]


def parse_rates(text: str) -> dict[str, float]:
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, raw = part.rpartition("=")
        parse_outcome(name)
        rates[name] = float(raw)
    return rates


class SimulatedProvider:
    def __init__(self, rates: Mapping[str, float] | None = None, latency_s: float = DEFAULT_LATENCY_S):
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self.latency_s = latency_s

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SimulatedProvider:
        rates = parse_rates(env["GENQUEUE_SIM_RATES"]) if env.get("GENQUEUE_SIM_RATES") else None
        return cls(rates, float(env.get("GENQUEUE_SIM_LATENCY", DEFAULT_LATENCY_S)))

    def pick(self, payload: Mapping[str, Any], attempt: int, job_id: str) -> Outcome:
        if "simulate" in payload:
            outcomes = parse_outcomes(payload["simulate"])
            return outcomes[min(attempt, len(outcomes)) - 1]
        seed = hashlib.sha256(f"{job_id}:{attempt}".encode()).digest()
        draw = random.Random(seed).random()
        for name, rate in self.rates.items():
            if draw < rate:
                return parse_outcome(name)
            draw -= rate
        return Outcome("ok")

    def call(self, payload: Mapping[str, Any], *, attempt: int, job_id: str) -> dict[str, Any]:
        outcome = self.pick(payload, attempt, job_id)
        if self.latency_s:
            time.sleep(self.latency_s)
        name = outcome.name
        if name == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if name == "sleep":
            time.sleep(outcome.sleep_s)
        elif name == "timeout":
            raise ProviderTimeout("provider did not answer in time (simulated)")
        elif name == "reset":
            raise ConnectionResetError(104, "Connection reset by peer (simulated)")
        elif name in STATUS_OUTCOMES:
            code = int(name)
            raise ProviderError(code, MESSAGES[code], retry_after=outcome.retry_after)
        return {
            "provider_job_id": f"sim-{uuid.uuid4().hex[:12]}",
            "model": payload.get("model", "sim-1"),
            "output": f"generated for {payload['prompt'][:40]!r}",
            "attempt": attempt,
        }
