"""DLQ statistics: totals, breakdowns from the indexes, top fingerprints, a 24 h sparkline, counters."""

from __future__ import annotations

import time
from typing import Any

from ..errors import GenqueueError
from .bulk import matching
from .entry import decode, index_values
from .store import DLQStore, Filters

SPARK = "▁▂▃▄▅▆▇█"
HOUR_S = 3600


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


def dlq_stats(store: DLQStore, filters: Filters = Filters(), *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    conn = store.connection
    filtered = bool(filters.indexed()) or filters.since is not None or filters.until is not None
    if filtered:  # one pass over the matching entries
        scores: list[float] = []
        by: dict[str, dict[str, int]] = {f: {} for f in ("kind", "func", "user", "reason")}
        for batch in matching(store, filters):
            for job_id, score, raw in batch:
                try:
                    values = index_values(decode(raw, job_id))
                except GenqueueError:
                    continue
                scores.append(score)
                for f in by:
                    if f in values:
                        by[f][values[f]] = by[f].get(values[f], 0) + 1
        total = len(scores)
        hourly = [sum(1 for s in scores if now - (h + 1) * HOUR_S < s <= now - h * HOUR_S) for h in range(24)][::-1]
        oldest = min(scores, default=None)
    else:
        total = store.count()
        by = {f: store.index_counts(f) for f in ("kind", "func", "user", "reason")}
        with conn.pipeline(transaction=False) as pipe:
            for h in range(24):
                pipe.zcount(store.keys.all, f"({now - (h + 1) * HOUR_S!r}", repr(now - h * HOUR_S))
            hourly = [int(n) for n in pipe.execute()][::-1]
        first = conn.zrange(store.keys.all, 0, 0, withscores=True)
        oldest = first[0][1] if first else None
    fingerprints = sorted(store.index_counts("fingerprint").items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    top = []
    for fp, count in fingerprints:
        newest = conn.zrevrange(store.keys.index("fingerprint", fp), 0, 0)
        sample = None
        if newest:
            try:
                entry = store.get(newest[0].decode())
                sample = f"{entry['error'].get('type')}: {entry['error'].get('message')}"
            except GenqueueError:
                sample = None
        top.append({"fingerprint": fp, "count": count, "sample": sample})
    counters = store.stats_counters()
    return {
        "queue": store.keys.queue,
        "dlq": store.keys.dlq_name,
        "total": total,
        "by_kind": by["kind"],
        "by_func": by["func"],
        "by_user": by["user"],
        "by_reason": by["reason"],
        "top_fingerprints": top,
        "hourly_last_24h": hourly,
        "sparkline": sparkline(hourly),
        "counters": {k: counters.get(k, 0) for k in ("dead_lettered", "replayed", "expired", "evicted", "imported")},
        "oldest_age_s": None if oldest is None else round(now - oldest, 1),
    }
