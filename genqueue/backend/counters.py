"""Counters for /metrics that live in Redis, one hash per queue, incremented by HINCRBY inside the same
MULTI as the move they count — so they hold across every worker process and machine and can never
disagree with what happened: a transaction that did not commit counted nothing.

Fields, as few per move as possible (each is an HINCRBY on the hot path): `enqueued` (`jobs/submit.py`),
`retried:<KIND>` or
`dead:<KIND>:<reason>` (what a failure decision did), `task:<outcome>:<task>` (finished, retried or dead, by
task name: one more HINCRBY per move), `duration:<outcome>:<le>` (non-cumulative histogram
buckets) and `duration_sum:<outcome>`, outcome `finished` or `failed`. Derived when read: finished jobs =
the `finished` buckets' total, failed attempts of a kind = its retries + its dead-letters, histogram
counts = bucket totals. The field logic is pure (`fields_for_*`, `parse`).
"""

from __future__ import annotations

from typing import Any

from . import keys

ENQUEUED = "enqueued"  # new jobs (producer, enqueue_many, run items); retries and replays are not new jobs
CANCELED = "canceled"  # jobs that reached the place `canceled` (jobs/cancel.py, worker/cancel.py)
BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # seconds; then +Inf


def bucket(seconds: float) -> str:
    for le in BUCKETS:
        if seconds <= le:
            return repr(le)
    return "+Inf"


def duration_fields(outcome: str, seconds: float | None) -> dict[str, float]:
    """One bucket (and the sum when known): an unknown duration still counts, in +Inf."""
    if seconds is None or seconds < 0:
        return {f"duration:{outcome}:+Inf": 1}
    return {f"duration:{outcome}:{bucket(seconds)}": 1, f"duration_sum:{outcome}": seconds}


def fields_for_enqueued(n: int) -> dict[str, float]:
    """New jobs created in a caller's MULTI (enqueue_many, run submits); submit.py counts its own."""
    return {ENQUEUED: n} if n else {}


def task_field(outcome: str, task: str | None) -> dict[str, float]:
    return {f"task:{outcome}:{task}": 1} if task else {}


def fields_for_success(seconds: float | None, task: str | None = None) -> dict[str, float]:
    return {**duration_fields("finished", seconds), **task_field("finished", task)}


def fields_for_failure(
    kind: str, retried: bool, reason: str | None, seconds: float | None, task: str | None = None
) -> dict[str, float]:
    outcome = f"retried:{kind}" if retried else f"dead:{kind}:{reason}"
    return {outcome: 1, **duration_fields("failed", seconds), **task_field("retried" if retried else "dead", task)}


def count_in(pipe: Any, queue: str, fields: dict[str, float]) -> None:
    """Queue the increments into the caller's MULTI."""
    key = keys.metrics(queue)
    for field, amount in fields.items():
        if field.startswith("duration_sum:"):
            pipe.hincrbyfloat(key, field, amount)
        else:
            pipe.hincrby(key, field, int(amount))


def parse(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """The hash as families: finished, failed/retried {kind}, dead {(kind, reason)}, durations {outcome}."""
    out: dict[str, Any] = {
        "enqueued": 0,
        "canceled": 0,
        "finished": 0,
        "failed": {},
        "retried": {},
        "dead": {},
        "duration": {},
        "tasks": {},
    }
    for k, v in raw.items():
        field, value = k.decode(), v.decode()
        name, _, rest = field.partition(":")
        if name == ENQUEUED:
            out["enqueued"] = int(value)
        elif name == CANCELED:
            out["canceled"] = int(value)
        elif name == "retried":
            out["retried"][rest] = int(value)
        elif name == "dead":
            kind, _, reason = rest.partition(":")
            out["dead"][(kind, reason)] = int(value)
        elif name == "task":
            outcome, _, task = rest.partition(":")  # a task name may hold ':' itself
            out["tasks"][(task, outcome)] = int(value)
        elif name in ("duration", "duration_sum"):
            outcome, _, le = rest.partition(":")
            d = out["duration"].setdefault(outcome, {"buckets": {}, "sum": 0.0, "count": 0})
            if name == "duration":
                d["buckets"][le] = int(value)
                d["count"] += int(value)
            else:
                d["sum"] = float(value)
    for kind, n in out["retried"].items():
        out["failed"][kind] = out["failed"].get(kind, 0) + n
    for (kind, _reason), n in out["dead"].items():
        out["failed"][kind] = out["failed"].get(kind, 0) + n
    out["finished"] = out["duration"].get("finished", {}).get("count", 0)
    return out


def cumulative(buckets: dict[str, int]) -> list[tuple[str, int]]:
    """Prometheus buckets (cumulative, +Inf last) from the stored non-cumulative ones."""
    total, out = 0, []
    for le in [repr(b) for b in BUCKETS] + ["+Inf"]:
        total += buckets.get(le, 0)
        out.append((le, total))
    return out


def seconds_between(started, ended) -> float | None:
    if started is None or ended is None:
        return None
    return (ended - started).total_seconds()
