"""A provider that fails on demand, like real image/LLM APIs do.

Per payload: `"simulate": [outcome, ...]`, outcome i for attempt i, the last one repeating. Otherwise each
attempt draws an outcome from the configured rates (GENQUEUE_SIM_RATES, e.g. "429=0.08,500=0.04"),
seeded by job id and attempt so a run is reproducible.

Outcomes: ok, 429, 429:retry_after=N, 500, 502, 503, timeout, reset, 401, 422, crash (the work horse
SIGKILLs itself), sleep=N (sleep N seconds, then succeed), down_until=T (a 503 until the Unix time T, then
success: an outage of a set length, whichever attempt it meets), down_while=NAME (a 503 while the Redis key
`genqueue:sim:down:NAME` exists: an outage that whoever runs it ends, e.g. the breaker's chaos test once it has
seen the breaker open and probe, whatever the machine's speed).
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
from typing import TYPE_CHECKING, Any

from ...errors import InvalidInput

if TYPE_CHECKING:
    from ...limits.rules import Rate

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
    until: float = 0.0
    down_flag: str = ""


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
    if text.startswith("down_until="):
        return Outcome("down", until=_number(text.split("=", 1)[1], text))
    if text.startswith("down_while="):
        flag = text.split("=", 1)[1]
        if not flag or len(flag) > 100:
            raise InvalidInput(f"bad flag name in simulate outcome {text!r}")
        return Outcome("down_while", down_flag=flag)
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


SHARED_LIMIT = """
-- KEYS: window zset, stats hash.  ARGV: now ms, n, period ms, job id.  Returns 0 (allowed) or ms to wait.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[2], 'calls', 1)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4] .. ':' .. ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
redis.call('HINCRBY', KEYS[2], 'rate_limited', 1)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + tonumber(ARGV[3]) - tonumber(ARGV[1]))
"""


class SimulatedProvider:
    def __init__(
        self,
        rates: Mapping[str, float] | None = None,
        latency_s: float = DEFAULT_LATENCY_S,
        shared_limit: str | None = None,
        ledger: str | None = None,
    ):
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self.latency_s = latency_s
        self.ledger = ledger  # a file that gets one line (the job id) per successful call: bench.chaos counts
        # the calls a failover made run twice from it, outside Redis (whatever a failover rolled back)
        self.shared_limit: Rate | None = None
        if shared_limit:
            from ...limits.rules import parse_rate

            self.shared_limit = parse_rate(shared_limit)

    def _enforce_shared_limit(self, job_id: str, rate: Rate) -> None:
        """Like a real API's per-key limit: N calls per period across every worker (a sliding log in Redis),
        429 with the exact Retry-After beyond it, on every call, `simulate` directives included."""
        from rq import get_current_job

        from ...backend import keys
        from ...backend.scripts import registered

        job = get_current_job()
        if job is None:
            return
        wait_ms = registered(job.connection, SHARED_LIMIT)(
            keys=[keys.SIM_WINDOW, keys.SIM_STATS], args=[int(time.time() * 1000), rate.n, rate.period_ms, job_id]
        )
        if wait_ms:
            raise ProviderError(429, MESSAGES[429], retry_after=max(0.001, int(wait_ms) / 1000))

    @staticmethod
    def _flag_up(flag: str) -> bool:
        from rq import get_current_job

        from ...backend import keys

        job = get_current_job()
        return bool(job is not None and job.connection.exists(keys.sim_down(flag)))

    def _note_success(self, job_id: str) -> None:
        """One line per successful call, appended with one write (O_APPEND: lines of concurrent workers do
        not interleave)."""
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # type: ignore[arg-type]
        try:
            os.write(fd, f"{job_id}\n".encode())
        finally:
            os.close(fd)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SimulatedProvider:
        rates = parse_rates(env["GENQUEUE_SIM_RATES"]) if env.get("GENQUEUE_SIM_RATES") else None
        return cls(
            rates,
            float(env.get("GENQUEUE_SIM_LATENCY", DEFAULT_LATENCY_S)),
            env.get("GENQUEUE_SIM_RATE_LIMIT") or None,
            env.get("GENQUEUE_SIM_LEDGER") or None,
        )

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
        if self.shared_limit is not None:
            self._enforce_shared_limit(job_id, self.shared_limit)
        outcome = self.pick(payload, attempt, job_id)
        if self.latency_s:
            time.sleep(self.latency_s)
        name = outcome.name
        if name == "down":
            name = "503" if time.time() < outcome.until else "ok"
        elif name == "down_while":
            name = "503" if self._flag_up(outcome.down_flag) else "ok"
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
        if self.ledger:
            self._note_success(job_id)
        return {
            "provider_job_id": f"sim-{uuid.uuid4().hex[:12]}",
            "model": payload.get("model", "sim-1"),
            "output": f"generated for {payload['prompt'][:40]!r}",
            "attempt": attempt,
        }
