"""Periodic DLQ maintenance, run by `genqueue scheduler` (its own process in the Procfile).

Why not rq-scheduler or RQ's cron: rq-scheduler 0.14's Scheduler and RQ 2.12's CronScheduler take no
serializer, so the jobs they create are pickled, which genqueue's JSON-only workers refuse (and pickle is
what we do not run). Both also only *enqueue* — maintenance would then wait behind generation jobs and
stop when the workers are down, which is exactly when alerts matter. So the scheduler is a plain loop
doing the work itself, one instance per deployment (a lock key makes extra instances idle).

Each tick, per queue: the workers' abandoned-job sweep (worker/sweep.py: dead workers' jobs and jobs RQ's
cleanup moved to FailedJobRegistry become CRASH retries, also while no worker runs); prune index members
past retention (counted, logged); alert when the DLQ size or the last hour's dead-letters pass a threshold
(log line + optional webhook POST, at most once per cooldown, webhook failures logged, never fatal);
auto-retry entries of chosen kinds whose cooldown has passed (off by default; counted as replays and
audited).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from ..backend import audit, keys
from ..errors import InvalidInput
from ..support.durations import parse_duration
from ..support.logs import get_logger
from .bulk import bulk_replay
from .store import DLQStore, Filters

log = get_logger("genqueue.maintenance")
LOCK_KEY = keys.SCHEDULER_LOCK
ALERT_COOLDOWN_S = 3600


@dataclass(frozen=True)
class MaintenanceConfig:
    interval_s: float = 60.0
    alert_size: int | None = None  # alert when a DLQ holds more entries than this
    alert_rate_per_hour: int | None = None  # ... or received more than this in the last hour
    webhook_url: str | None = None
    auto_retry: Mapping[str, float] = field(default_factory=dict)  # kind → cooldown seconds

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MaintenanceConfig:
        def opt_int(name):
            raw = env.get(name)
            if not raw:
                return None
            if not raw.isdigit():
                raise InvalidInput(f"{name} must be a whole number, not {raw!r}")
            return int(raw)

        auto = {}
        for part in filter(None, (p.strip() for p in env.get("GENQUEUE_AUTO_RETRY", "").split(","))):
            kind, sep, after = part.partition("=")
            if not sep:
                raise InvalidInput(f"GENQUEUE_AUTO_RETRY parts are KIND=cooldown (e.g. RATE_LIMITED=15m), not {part!r}")
            auto[kind.strip().upper()] = parse_duration(after.strip()).total_seconds()
        return cls(
            interval_s=parse_duration(env.get("GENQUEUE_MAINTENANCE_INTERVAL") or "60").total_seconds(),
            alert_size=opt_int("GENQUEUE_DLQ_ALERT_SIZE"),
            alert_rate_per_hour=opt_int("GENQUEUE_DLQ_ALERT_RATE"),
            webhook_url=env.get("GENQUEUE_DLQ_WEBHOOK") or None,
            auto_retry=auto,
        )


def post_webhook(url: str, body: dict[str, Any], timeout_s: float = 5.0) -> bool:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # admin-configured URL
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The URL (and an error that quotes it) may carry a token, as Slack's do: log its host only.
        log.warning("dlq.webhook_failed", host=urllib.parse.urlsplit(url).hostname, error=type(exc).__name__)
        return False


def check_alerts(store: DLQStore, config: MaintenanceConfig, now: float) -> list[dict[str, Any]]:
    conn = store.connection
    size = store.count()
    last_hour = int(conn.zcount(store.keys.all, repr(now - 3600), "+inf"))
    alerts: list[dict[str, Any]] = []
    if config.alert_size is not None and size > config.alert_size:
        alerts.append({"alert": "dlq_size", "queue": store.keys.queue, "size": size, "threshold": config.alert_size})
    if config.alert_rate_per_hour is not None and last_hour > config.alert_rate_per_hour:
        alerts.append(
            {
                "alert": "dlq_rate",
                "queue": store.keys.queue,
                "last_hour": last_hour,
                "threshold": config.alert_rate_per_hour,
            }
        )
    fired = []
    for alert in alerts:
        if conn.set(keys.alerted(store.keys.queue, alert["alert"]), int(now), nx=True, ex=ALERT_COOLDOWN_S):
            log.warning("dlq.alert", **alert)
            if config.webhook_url:
                post_webhook(config.webhook_url, alert)
            fired.append(alert)
    return fired


def auto_retry(store: DLQStore, config: MaintenanceConfig, now: float) -> int:
    replayed = 0
    for kind, cooldown in config.auto_retry.items():
        result = bulk_replay(store, Filters(kind=kind, until=now - cooldown), acknowledge=False)
        if result.done:
            log.info("dlq.auto_retried", queue=store.keys.queue, kind=kind, count=result.done)
            audit.record(
                store.connection,
                "auto_retry",
                store.keys.queue,
                filters={"kind": kind},
                counts={"replayed": result.done, **result.skipped},
                ids=result.ids,
            )
        replayed += result.done
    return replayed


def run_once(
    connection: Redis,
    queues: list[str],
    config: MaintenanceConfig,
    retention_s: int,
    sweep: Callable[[str], int] | None = None,
) -> dict:
    """One pass per queue. `sweep(queue)`: the workers' abandoned-job sweep, so jobs of dead workers and
    genqueue jobs that RQ's cleanup failed are taken back even while no worker runs."""
    now = time.time()
    report = {}
    for name in queues:
        store = DLQStore(connection, name, retention_s=retention_s)
        report[name] = {
            "expired": store.prune(),
            "alerts": check_alerts(store, config, now),
            "auto_retried": auto_retry(store, config, now),
        }
        if sweep is not None:
            report[name]["reclaimed"] = sweep(name)
    return report


def run_forever(
    connection: Redis,
    queues: list[str],
    config: MaintenanceConfig,
    retention_s: int,
    holder: str,
    *,
    once: bool = False,
    stop=lambda: False,
    sweep: Callable[[str], int] | None = None,
) -> None:
    lock_ms = int(max(config.interval_s * 3, 10) * 1000)
    while not stop():
        if connection.set(LOCK_KEY, holder, nx=True, px=lock_ms) or connection.get(LOCK_KEY) == holder.encode():
            connection.pexpire(LOCK_KEY, lock_ms)
            report = run_once(connection, queues, config, retention_s, sweep)
            log.info("maintenance.tick", **{q: r for q, r in report.items()})
        if once:
            return
        time.sleep(config.interval_s)
