"""DLQ statistics: totals, breakdowns from the indexes, top fingerprints, a 24 h sparkline, counters.

Unfiltered, every figure comes from the indexes (no entry is read but one sample per top fingerprint).
Filtered, every figure comes from one pass over the matching entries, so none describes the whole queue
beside others that describe the filter; the counters (lifetime events of the whole queue, which no entry
records) are then left out (None)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from ..errors import GenqueueError
from .bulk import matching
from .entry import decode, index_values
from .store import DLQStore, Filters

SPARK = "▁▂▃▄▅▆▇█"
HOUR_S = 3600
TOP_FINGERPRINTS = 10
BREAKDOWNS = ("kind", "func", "user", "reason")
COUNTERS = ("dead_lettered", "replayed", "expired", "evicted", "imported")


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


@dataclass(frozen=True, slots=True)
class Row:
    """What the figures need of one matching entry."""

    score: float  # failed_at
    values: dict[str, str]  # index_values: kind, func, user, reason, fingerprint
    sample: str | None  # "Type: message" of its error


def hourly_counts(scores: list[float], now: float) -> list[int]:
    """Entries per hour over the last 24 h, oldest hour first; hour h is (now - (h+1) h, now - h h], as
    the unfiltered answer's ZCOUNTs."""
    return [sum(1 for s in scores if now - (h + 1) * HOUR_S < s <= now - h * HOUR_S) for h in range(24)][::-1]


def tally(rows: Iterable[Row], now: float) -> dict[str, Any]:
    """Every figure of a filtered answer, from the matching entries alone (pure; one pass, keeping only
    the scores and the newest row of each fingerprint)."""
    by: dict[str, dict[str, int]] = {f: {} for f in BREAKDOWNS}
    fingerprints: dict[str, int] = {}
    newest: dict[str, Row] = {}
    scores: list[float] = []
    for row in rows:
        scores.append(row.score)
        for f in BREAKDOWNS:
            if f in row.values:
                by[f][row.values[f]] = by[f].get(row.values[f], 0) + 1
        fp = row.values.get("fingerprint")
        if fp is not None:
            fingerprints[fp] = fingerprints.get(fp, 0) + 1
            if fp not in newest or row.score > newest[fp].score:
                newest[fp] = row
    top = sorted(fingerprints.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FINGERPRINTS]
    return {
        "total": len(scores),
        "by": by,
        "hourly": hourly_counts(scores, now),
        "oldest": min(scores, default=None),
        "top": [{"fingerprint": fp, "count": n, "sample": newest[fp].sample} for fp, n in top],
    }


def error_sample(entry: dict[str, Any]) -> str:
    error = entry.get("error") or {}
    return f"{error.get('type')}: {error.get('message')}"


def _rows(store: DLQStore, filters: Filters) -> Iterator[Row]:
    for batch in matching(store, filters):
        for job_id, score, raw in batch:
            try:
                entry = decode(raw, job_id)
            except GenqueueError:
                continue
            yield Row(score, index_values(entry), error_sample(entry))


def _unfiltered(store: DLQStore, now: float) -> dict[str, Any]:
    conn = store.connection
    by = {f: store.index_counts(f) for f in BREAKDOWNS}
    with conn.pipeline(transaction=False) as pipe:
        for h in range(24):
            pipe.zcount(store.keys.all, f"({now - (h + 1) * HOUR_S!r}", repr(now - h * HOUR_S))
        hourly = [int(n) for n in pipe.execute()][::-1]
    first = conn.zrange(store.keys.all, 0, 0, withscores=True)
    fingerprints = sorted(store.index_counts("fingerprint").items(), key=lambda kv: (-kv[1], kv[0]))
    top = []
    for fp, count in fingerprints[:TOP_FINGERPRINTS]:
        newest = cast("list[bytes]", conn.zrevrange(store.keys.index("fingerprint", fp), 0, 0))
        sample = None
        if newest:
            try:
                sample = error_sample(store.get(newest[0].decode()))
            except GenqueueError:
                sample = None
        top.append({"fingerprint": fp, "count": count, "sample": sample})
    return {"total": store.count(), "by": by, "hourly": hourly, "oldest": first[0][1] if first else None, "top": top}


def dlq_stats(store: DLQStore, filters: Filters | None = None, *, now: float | None = None) -> dict[str, Any]:
    filters = Filters() if filters is None else filters
    now = time.time() if now is None else now
    filtered = bool(filters.indexed()) or filters.since is not None or filters.until is not None
    figures = tally(_rows(store, filters), now) if filtered else _unfiltered(store, now)
    counters = None
    if not filtered:
        stored = store.stats_counters()
        counters = {k: stored.get(k, 0) for k in COUNTERS}
    return {
        "queue": store.keys.queue,
        "dlq": store.keys.dlq_name,
        "total": figures["total"],
        "by_kind": figures["by"]["kind"],
        "by_func": figures["by"]["func"],
        "by_user": figures["by"]["user"],
        "by_reason": figures["by"]["reason"],
        "top_fingerprints": figures["top"],
        "hourly_last_24h": figures["hourly"],
        "sparkline": sparkline(figures["hourly"]),
        "counters": counters,
        "oldest_age_s": None if figures["oldest"] is None else round(now - figures["oldest"], 1),
    }
