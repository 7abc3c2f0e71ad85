"""Prometheus metrics, read from Redis at scrape time: every API process (and every machine) reports the
same numbers, because they are the queues', the registries' and the DLQ's own state, not per-process
counters. Two pipelined round trips per scrape for the queues (the second asks which registered workers are
alive), and the limits store's `describe` for the provider limit keys.

Exported: queue depth by state, workers alive, DLQ size and oldest age and the DLQ's own counters
(replays by outcome, expired, evicted), the counters of the moves (new jobs enqueued, `jobs/submit.py`;
finished; failed attempts and retries by kind; dead-lettered by kind and reason; the attempt-duration
histogram — `backend/counters.py`, each incremented in the MULTI of the move it counts), per provider limit
key its in-flight and parked jobs, its state (closed, paused, open, half-open: 1 for the current one) and its
totals (throttled, paused, 429s, breaker opens), the API's requests by route and status (in-process), and
usage and budgets: every tenant's usage this UTC hour per unit, and — labelled by tenant only for the tenants an
admin gave a budget, so the labels stay bounded whatever tenants send — each cap's limit and what was used
against it this period, the breaches (once per tenant, unit and period) and the jobs refused or parked.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis import Redis

from ..backend import counters, keys
from ..backend.keys import DLQKeys
from ..dlq.replay import REFUSED
from ..limits.store import describe as describe_limits
from ..usage.budget_store import all_budgets, breach_counts
from ..usage.budget_store import describe as describe_budget
from ..usage.store import current_hour

DLQ_COUNTERS = {"expired": "genqueue_dlq_expired_total", "evicted": "genqueue_dlq_evicted_total"}
LIMIT_STATES = ("closed", "paused", "open", "half-open")  # genqueue_limit_state: one series each, 1 for the current
LIMIT_COUNTERS = {  # limits store counter -> family (without _total), help
    "throttled": ("genqueue_limit_throttled", "Jobs parked because the key's concurrency or rate was used up"),
    "paused": ("genqueue_limit_paused", "Jobs parked because the key was paused (a 429's Retry-After)"),
    "rate_limited": ("genqueue_limit_rate_limited", "429 answers from the provider for this key"),
    "breaker_opens": ("genqueue_limit_breaker_opens", "Times the key's breaker opened (5xx/timeout storms)"),
    "held": ("genqueue_limit_held", "Jobs parked because the key's breaker was open or its probe out"),
    "probes": ("genqueue_limit_probes", "Probe calls let through a half-open breaker"),
    "unit_throttled": (
        "genqueue_limit_unit_throttled",
        "Jobs parked because a unit limit (tokens, images, usd) had no room for their estimate",
    ),
}
ALWAYS_COUNTED = ("throttled", "paused", "rate_limited", "breaker_opens")  # 0 before the first; the rest once present


def read(connection: Redis, queues: Iterable[str], now: float | None = None) -> dict[str, dict]:
    """Per queue: depth by state, DLQ entries and oldest age, DLQ counters, workers alive."""
    queues = list(queues)
    now = time.time() if now is None else now
    with connection.pipeline(transaction=False) as pipe:
        for q in queues:
            dlq = DLQKeys(q)
            pipe.llen(keys.rq_queue(q))
            pipe.zcard(keys.rq_scheduled(q))
            pipe.zcard(f"rq:wip:{q}")
            pipe.zcard(dlq.all)
            pipe.zrange(dlq.all, 0, 0, withscores=True)
            pipe.hgetall(dlq.stats)
            pipe.smembers(f"rq:workers:{q}")
            pipe.hgetall(keys.metrics(q))
            pipe.hget(keys.fair(q) + "n", "*")  # the jobs waiting in the fair lanes (tenants/fair.py)
        replies = pipe.execute()
    out: dict[str, dict] = {}
    workers: dict[str, list[str]] = {}
    for i, q in enumerate(queues):
        queued, scheduled, started, entries, oldest, stats, members, counted, lanes = replies[9 * i : 9 * i + 9]
        out[q] = {
            "depth": {"queued": queued + int(lanes or 0), "scheduled": scheduled, "started": started},
            "dlq_entries": entries,
            "dlq_oldest_age_s": max(0.0, now - oldest[0][1]) if oldest else 0.0,
            "dlq": {k.decode(): int(v) for k, v in stats.items()},
            "counters": counters.parse(counted),
        }
        workers[q] = [m.decode().removeprefix("rq:worker:") for m in members]
    names = sorted({n for ns in workers.values() for n in ns})
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.alive(name))
        alive = dict(zip(names, pipe.execute(), strict=False)) if names else {}
    for q in queues:
        out[q]["workers_alive"] = sum(1 for n in workers[q] if alive.get(n))
    return out


class RedisCollector:
    def __init__(
        self, connection: Redis, queues: Iterable[str], api_requests: Mapping[tuple[str, int], int] | None = None
    ) -> None:
        self.connection, self.queues, self.api_requests = connection, list(queues), api_requests

    @staticmethod
    def _transition_families(data: dict[str, dict]):
        enqueued = CounterMetricFamily(
            "genqueue_jobs_enqueued", "New jobs enqueued or scheduled (not retries or replays)", labels=["queue"]
        )
        finished = CounterMetricFamily("genqueue_jobs_finished", "Jobs that finished", labels=["queue"])
        failed = CounterMetricFamily(
            "genqueue_attempts_failed", "Failed attempts by error kind", labels=["queue", "kind"]
        )
        retried = CounterMetricFamily(
            "genqueue_retries_scheduled", "Retries scheduled by error kind", labels=["queue", "kind"]
        )
        dead = CounterMetricFamily(
            "genqueue_dead_lettered", "Jobs dead-lettered by kind and reason", labels=["queue", "kind", "reason"]
        )
        duration = HistogramMetricFamily(
            "genqueue_job_duration_seconds", "Attempt duration by outcome", labels=["queue", "outcome"]
        )
        tasks = CounterMetricFamily(
            "genqueue_task_attempts",
            "Attempts by task and outcome (finished, retried, dead)",
            labels=["queue", "task", "outcome"],
        )
        for q, d in data.items():
            c = d["counters"]
            enqueued.add_metric([q], c["enqueued"])
            finished.add_metric([q], c["finished"])
            for kind, n in sorted(c["failed"].items()):
                failed.add_metric([q, kind], n)
            for kind, n in sorted(c["retried"].items()):
                retried.add_metric([q, kind], n)
            for (kind, reason), n in sorted(c["dead"].items()):
                dead.add_metric([q, kind, reason], n)
            for outcome, h in sorted(c["duration"].items()):
                duration.add_metric([q, outcome], counters.cumulative(h["buckets"]), h["sum"])
            for (task, outcome), n in sorted(c.get("tasks", {}).items()):
                tasks.add_metric([q, task, outcome], n)
        yield from (enqueued, finished, failed, retried, dead, duration, tasks)

    @staticmethod
    def _limit_families(rows: list[dict]):
        in_flight = GaugeMetricFamily(
            "genqueue_limit_in_flight", "Jobs of the limit key holding a slot now", labels=["key"]
        )
        parked = GaugeMetricFamily(
            "genqueue_limit_parked", "Jobs of the limit key parked, waiting off the queue", labels=["key"]
        )
        state = GaugeMetricFamily(
            "genqueue_limit_state",
            "The limit key's state: 1 for the current one (closed, paused, open, half-open)",
            labels=["key", "state"],
        )
        totals = {
            field: CounterMetricFamily(name, text, labels=["key"]) for field, (name, text) in LIMIT_COUNTERS.items()
        }
        for row in rows:
            key = row["key"]
            in_flight.add_metric([key], row["in_flight"])
            parked.add_metric([key], row["parked"])
            for name in dict.fromkeys((*LIMIT_STATES, row["state"])):
                state.add_metric([key, name], 1 if name == row["state"] else 0)
            counted = row.get("counters") or {}
            for field, family in totals.items():
                if field in counted or field in ALWAYS_COUNTED:
                    family.add_metric([key], counted.get(field, 0))
        yield from (in_flight, parked, state, *totals.values())

    @staticmethod
    def _usage_families(connection: Redis):
        hour = GaugeMetricFamily(
            "genqueue_usage_current_hour", "Usage recorded this UTC hour, every tenant together", labels=["unit"]
        )
        for unit, amount in current_hour(connection).items():
            hour.add_metric([unit], amount)
        limit = GaugeMetricFamily(
            "genqueue_budget_limit", "A budget's cap (tenants with a budget only)", labels=["tenant", "unit", "period"]
        )
        used = GaugeMetricFamily(
            "genqueue_budget_used",
            "Used this period against a budget's cap (tenants with a budget only)",
            labels=["tenant", "unit", "period"],
        )
        spent = GaugeMetricFamily("genqueue_budget_spent", "1 while a tenant's budget is spent", labels=["tenant"])
        for tenant, budget in all_budgets(connection).items():
            row = describe_budget(connection, tenant, budget)
            spent.add_metric([tenant], 1 if row["spent"] else 0)
            for cap in row["caps"]:
                limit.add_metric([tenant, cap["unit"], cap["period"]], cap["limit"])
                used.add_metric([tenant, cap["unit"], cap["period"]], cap["used"])
        counted = breach_counts(connection)
        breaches = CounterMetricFamily(
            "genqueue_budget_breaches",
            "Budget caps reached, counted once per tenant, unit and period",
            labels=["unit", "period"],
        )
        jobs = CounterMetricFamily(
            "genqueue_budget_jobs", "New jobs a spent budget refused or parked", labels=["action"]
        )
        for action in ("refused", "parked"):
            jobs.add_metric([action], counted.pop(action, 0))
        for name, n in sorted(counted.items()):
            unit, _, period = name.partition(":")
            breaches.add_metric([unit, period], n)
        yield from (hour, limit, used, spent, breaches, jobs)

    def collect(self):
        data = read(self.connection, self.queues)
        limit_rows = describe_limits(self.connection)
        depth = GaugeMetricFamily("genqueue_queue_depth", "Jobs per queue and state", labels=["queue", "state"])
        workers = GaugeMetricFamily("genqueue_workers_alive", "genqueue workers beating", labels=["queue"])
        entries = GaugeMetricFamily("genqueue_dlq_entries", "Entries in the queue's DLQ", labels=["queue"])
        oldest = GaugeMetricFamily("genqueue_dlq_oldest_age_seconds", "Age of the DLQ's oldest entry", labels=["queue"])
        dlq_counters = {
            field: CounterMetricFamily(name.removesuffix("_total"), f"DLQ counter {field}", labels=["queue"])
            for field, name in DLQ_COUNTERS.items()
        }
        for q, d in data.items():
            for state, n in d["depth"].items():
                depth.add_metric([q, state], n)
            workers.add_metric([q], d["workers_alive"])
            entries.add_metric([q], d["dlq_entries"])
            oldest.add_metric([q], d["dlq_oldest_age_s"])
            for field, family in dlq_counters.items():
                family.add_metric([q], d["dlq"].get(field, 0))
        replays = CounterMetricFamily(
            "genqueue_dlq_replays",
            "DLQ replays by outcome: replayed, or why not (gone, not_found, max_replays, finished, live, corrupt)",
            labels=["queue", "outcome"],
        )
        for q, d in data.items():
            replays.add_metric([q, "replayed"], d["dlq"].get("replayed", 0))
            for field, n in sorted(d["dlq"].items()):
                if field.startswith(REFUSED):
                    replays.add_metric([q, field.removeprefix(REFUSED)], n)
        yield from (depth, workers, entries, oldest, replays, *dlq_counters.values())
        yield from self._transition_families(data)
        yield from self._limit_families(limit_rows)
        yield from self._usage_families(self.connection)
        if self.api_requests is not None:
            requests = CounterMetricFamily(
                "genqueue_api_requests", "HTTP requests by route and status", labels=["route", "status"]
            )
            for (route, status), n in sorted(self.api_requests.items()):
                requests.add_metric([route, str(status)], n)
            yield requests


def render(
    connection: Redis, queues: Iterable[str], api_requests: Mapping[tuple[str, int], int] | None = None
) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(connection, queues, api_requests))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """No token configured: open. Otherwise `Authorization: Bearer <GENQUEUE_METRICS_TOKEN>`, compared in
    constant time."""
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
