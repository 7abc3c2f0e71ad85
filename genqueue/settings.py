"""One Settings object, read from the environment once and passed explicitly."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .errors import InvalidInput

DEFAULT_QUEUE = "generation-queue"
DEFAULT_DLQ_RETENTION_S = 7 * 24 * 3600  # 7 days
DEFAULT_HOME = Path.home() / ".local" / "share" / "genqueue"
DEFAULT_MAX_LIMIT_KEYS = 1000  # distinct limit keys; a new one beyond: refused (its bounds: BOUNDS)
DAY_S = 86400
DEFAULT_WEBHOOK_QUEUE = "genqueue-webhooks"
# Every numeric setting's bounds (inclusive), checked at start: a value outside is one line and exit 2,
# never an OverflowError at a worker's first dead letter or a retry scheduled for the year 1e300.
BOUNDS: dict[str, tuple[float, float]] = {
    "GENQUEUE_DLQ_RETENTION": (1, 3650 * DAY_S),  # seconds an entry is kept: up to 10 years
    "GENQUEUE_BACKOFF_SCALE": (0.0001, 100),  # multiplies every policy's base delay and cap
    "GENQUEUE_LIVENESS_TTL": (0.1, 3600),  # seconds
    "GENQUEUE_SWEEP_INTERVAL": (0.05, 3600),  # seconds
    "GENQUEUE_REDIS_OUTAGE_S": (0.1, 7 * DAY_S),  # seconds
    "GENQUEUE_CONCURRENCY": (1, 1000),  # jobs at once in one worker process
    "GENQUEUE_SHUTDOWN_GRACE": (0.1, 3600),  # seconds
    "GENQUEUE_MAX_LIMIT_KEYS": (1, 1_000_000),  # distinct limit keys
    "GENQUEUE_WAIT_TIMEOUT": (0.001, 60),  # seconds an acknowledged write waits for its replicas
    "GENQUEUE_CANCEL_GRACE": (0.1, 3600),  # seconds a canceled running job has to stop on its own
    "GENQUEUE_WEBHOOK_TIMEOUT": (0.1, 300),  # seconds one webhook delivery waits for its endpoint
}


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None  # None: use the embedded Valkey server under `home`
    home: Path = DEFAULT_HOME
    queue: str = DEFAULT_QUEUE
    log_format: str = "auto"  # auto | json | console
    dlq_retention_s: int = DEFAULT_DLQ_RETENTION_S
    backoff_scale: float = 1.0  # multiplies every policy's base delay and cap; the demo uses 0.04
    liveness_ttl_s: float = 10.0  # a worker silent this long is dead; its started jobs are abandoned
    sweep_interval_s: float = 2.0  # how often some live worker looks for abandoned jobs
    # {"TRANSIENT": {"max": "2", ...}} from GENQUEUE_POLICY_*
    policy_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    retry_rules: str | None = None  # "package.module:RULES": user classification rules for workers
    redis_outage_s: float = 60.0  # workers and the scheduler wait this long for a lost server to come back
    tasks: tuple[str, ...] = ()  # GENQUEUE_TASKS: modules whose @task functions workers (and the API) register
    api_tasks: tuple[str, ...] = ()  # GENQUEUE_API_TASKS: task names non-admins may enqueue over HTTP
    concurrency: int | None = None  # GENQUEUE_CONCURRENCY: jobs at once in one worker process (None: fork)
    shutdown_grace_s: float = 8.0  # GENQUEUE_SHUTDOWN_GRACE: a concurrent worker's wait for jobs on SIGTERM
    max_limit_keys: int = DEFAULT_MAX_LIMIT_KEYS  # GENQUEUE_MAX_LIMIT_KEYS: 1 to 1,000,000
    wait_replicas: int | None = None  # GENQUEUE_WAIT_REPLICAS: N, or -1 for all (backend/durable.py); None: off
    wait_timeout_s: float = 1.0  # GENQUEUE_WAIT_TIMEOUT: how long an acknowledged write waits for them
    cancel_grace_s: float = 5.0  # GENQUEUE_CANCEL_GRACE: a canceled running job's time to stop on its own
    webhook_queue: str = DEFAULT_WEBHOOK_QUEUE  # GENQUEUE_WEBHOOK_QUEUE: where webhook deliveries wait
    webhook_timeout_s: float = 10.0  # GENQUEUE_WEBHOOK_TIMEOUT: one delivery's wait for its endpoint

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        log_format = env.get("GENQUEUE_LOG_FORMAT", "auto").lower()
        if log_format not in ("auto", "json", "console"):
            raise InvalidInput(f"GENQUEUE_LOG_FORMAT must be auto, json or console, not {log_format!r}")
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            home=Path(env.get("GENQUEUE_HOME") or DEFAULT_HOME).expanduser(),
            queue=env.get("GENQUEUE_QUEUE") or DEFAULT_QUEUE,
            log_format=log_format,
            dlq_retention_s=_positive_int(env, "GENQUEUE_DLQ_RETENTION", DEFAULT_DLQ_RETENTION_S),
            backoff_scale=_positive(env, "GENQUEUE_BACKOFF_SCALE", 1.0),
            liveness_ttl_s=_positive(env, "GENQUEUE_LIVENESS_TTL", 10.0),
            sweep_interval_s=_positive(env, "GENQUEUE_SWEEP_INTERVAL", 2.0),
            policy_overrides=_policy_overrides(env),
            retry_rules=env.get("GENQUEUE_RETRY_RULES") or None,
            redis_outage_s=_positive(env, "GENQUEUE_REDIS_OUTAGE_S", 60.0),
            tasks=_names(env, "GENQUEUE_TASKS"),
            api_tasks=_names(env, "GENQUEUE_API_TASKS"),
            concurrency=_positive_int(env, "GENQUEUE_CONCURRENCY", None),
            shutdown_grace_s=_positive(env, "GENQUEUE_SHUTDOWN_GRACE", 8.0),
            max_limit_keys=max_limit_keys(env),
            wait_replicas=parse_wait_replicas(env.get("GENQUEUE_WAIT_REPLICAS")),
            wait_timeout_s=_positive(env, "GENQUEUE_WAIT_TIMEOUT", 1.0),
            cancel_grace_s=_positive(env, "GENQUEUE_CANCEL_GRACE", 5.0),
            webhook_queue=(env.get("GENQUEUE_WEBHOOK_QUEUE") or "").strip() or DEFAULT_WEBHOOK_QUEUE,
            webhook_timeout_s=_positive(env, "GENQUEUE_WEBHOOK_TIMEOUT", 10.0),
        )

    def with_queue(self, queue: str | None) -> Settings:
        return self if not queue else replace(self, queue=queue)


def max_limit_keys(environ: Mapping[str, str] | None = None) -> int:
    """GENQUEUE_MAX_LIMIT_KEYS (1 to 1,000,000; default 1000), or InvalidInput naming the variable. Read at
    each enqueue that would add a limit key (cheap: one lookup), checked by every command at start."""
    env = os.environ if environ is None else environ
    return _positive_int(env, "GENQUEUE_MAX_LIMIT_KEYS", DEFAULT_MAX_LIMIT_KEYS)  # bounded by BOUNDS


def webhook_allow(environ: Mapping[str, str] | None = None) -> str:
    """GENQUEUE_WEBHOOK_ALLOW as written (webhooks/urls.AllowList parses it), read at each enqueue and delivery."""
    env = os.environ if environ is None else environ
    return env.get("GENQUEUE_WEBHOOK_ALLOW") or ""


WAIT_ALL_REPLICAS = -1  # GENQUEUE_WAIT_REPLICAS=all (backend/durable.py says what "all" counts)


def parse_wait_replicas(raw: str | None) -> int | None:
    """GENQUEUE_WAIT_REPLICAS: unset/`0`/`off` = no waiting, `all`, or a positive whole number."""
    text = (raw or "").strip().lower()
    if text in ("", "0", "off", "no", "false"):
        return None
    if text == "all":
        return WAIT_ALL_REPLICAS
    if text.isdigit():
        return int(text)
    raise InvalidInput(f"GENQUEUE_WAIT_REPLICAS must be a number of replicas or 'all', not {raw!r}")


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())


_Default = TypeVar("_Default", int, None)
_Number = TypeVar("_Number", int, float)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number from the environment, or InvalidInput naming the variable."""
    raw = env.get(name)
    return _checked_positive(name, raw, float) if raw else default


def _positive_int(env: Mapping[str, str], name: str, default: _Default) -> int | _Default:
    """A positive whole number from the environment, or InvalidInput naming the variable."""
    raw = env.get(name)
    return _checked_positive(name, raw, int) if raw else default


def _checked_positive(name: str, raw: str, cast: type[_Number]) -> _Number:
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise InvalidInput(f"{name} must be {kind}, not {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise InvalidInput(f"{name} must be a positive finite number, not {raw!r}")
    low, high = BOUNDS[name]
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be from {_shown(low)} to {_shown(high)}, not {raw!r}")
    return value


def _shown(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def _policy_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """GENQUEUE_POLICY_<KIND>="max=5,base=5,factor=2,cap=3600,jitter=0.1" (any subset), checked here."""
    specs = {name: raw for name, raw in env.items() if name.startswith("GENQUEUE_POLICY_") and raw}
    if not specs:
        return {}  # and the retry package (~15 ms of imports) stays unloaded for commands that never retry
    from .retry.policy import merged_policies, parse_policy_spec

    overrides: dict[str, dict[str, str]] = {}
    for name, raw in specs.items():
        kind = name.removeprefix("GENQUEUE_POLICY_")
        try:
            overrides[kind] = parse_policy_spec(raw)
            merged_policies({kind: overrides[kind]})
        except ValueError as exc:
            raise InvalidInput(f"{name}: {exc}") from None
    return overrides
