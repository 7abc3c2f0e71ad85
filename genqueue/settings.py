"""One Settings object, read from the environment once and passed explicitly."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import InvalidInput

DEFAULT_QUEUE = "generation-queue"
DEFAULT_DLQ_RETENTION_S = 7 * 24 * 3600  # 7 days
DEFAULT_HOME = Path.home() / ".local" / "share" / "genqueue"


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
    policy_overrides: dict = field(default_factory=dict)  # {"TRANSIENT": {"max": "2", ...}} from GENQUEUE_POLICY_*
    retry_rules: str | None = None  # "package.module:RULES": user classification rules for workers
    redis_outage_s: float = 60.0  # workers and the scheduler wait this long for a lost server to come back
    tasks: tuple[str, ...] = ()  # GENQUEUE_TASKS: modules whose @task functions workers (and the API) register
    api_tasks: tuple[str, ...] = ()  # GENQUEUE_API_TASKS: task names non-admins may enqueue over HTTP
    concurrency: int | None = None  # GENQUEUE_CONCURRENCY: jobs at once in one worker process (None: fork)
    shutdown_grace_s: float = 8.0  # GENQUEUE_SHUTDOWN_GRACE: a concurrent worker's wait for jobs on SIGTERM
    cancel_grace_s: float = 5.0  # GENQUEUE_CANCEL_GRACE: a canceled running job's time to stop on its own

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        log_format = env.get("GENQUEUE_LOG_FORMAT", "auto").lower()
        if log_format not in ("auto", "json", "console"):
            raise InvalidInput(f"GENQUEUE_LOG_FORMAT must be auto, json or console, not {log_format!r}")
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            home=Path(env.get("GENQUEUE_HOME") or DEFAULT_HOME).expanduser(),
            queue=env.get("GENQUEUE_QUEUE") or DEFAULT_QUEUE,
            log_format=log_format,
            dlq_retention_s=_positive(env, "GENQUEUE_DLQ_RETENTION", DEFAULT_DLQ_RETENTION_S, int),
            backoff_scale=_positive(env, "GENQUEUE_BACKOFF_SCALE", 1.0),
            liveness_ttl_s=_positive(env, "GENQUEUE_LIVENESS_TTL", 10.0),
            sweep_interval_s=_positive(env, "GENQUEUE_SWEEP_INTERVAL", 2.0),
            policy_overrides=_policy_overrides(env),
            retry_rules=env.get("GENQUEUE_RETRY_RULES") or None,
            redis_outage_s=_positive(env, "GENQUEUE_REDIS_OUTAGE_S", 60.0),
            tasks=_names(env, "GENQUEUE_TASKS"),
            api_tasks=_names(env, "GENQUEUE_API_TASKS"),
            concurrency=_positive(env, "GENQUEUE_CONCURRENCY", None, int),
            shutdown_grace_s=_positive(env, "GENQUEUE_SHUTDOWN_GRACE", 8.0),
            cancel_grace_s=_positive(env, "GENQUEUE_CANCEL_GRACE", 5.0),
        )

    def with_queue(self, queue: str | None) -> Settings:
        return self if not queue else replace(self, queue=queue)


def _names(env, name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())


def _positive(env, name: str, default, cast=float):
    """A positive number from the environment (cast: int or float), or InvalidInput naming the variable."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise InvalidInput(f"{name} must be {kind}, not {raw!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise InvalidInput(f"{name} must be a positive finite number, not {raw!r}")
    return value


def _policy_overrides(env) -> dict:
    """GENQUEUE_POLICY_<KIND>="max=5,base=5,factor=2,cap=3600,jitter=0.1" (any subset), checked here."""
    specs = {name: raw for name, raw in env.items() if name.startswith("GENQUEUE_POLICY_") and raw}
    if not specs:
        return {}  # and the retry package (~15 ms of imports) stays unloaded for commands that never retry
    from .retry.policy import merged_policies, parse_policy_spec

    overrides = {}
    for name, raw in specs.items():
        kind = name.removeprefix("GENQUEUE_POLICY_")
        try:
            overrides[kind] = parse_policy_spec(raw)
            merged_policies({kind: overrides[kind]})
        except ValueError as exc:
            raise InvalidInput(f"{name}: {exc}") from None
    return overrides
