"""Fill a DLQ with N realistic ~2 KB entries (pipelined DLQStore.add) and measure get / delete / page /
filtered-page latencies against a bare GET round trip, and the memory each entry costs.

    python -m bench.dlq --entries 1000000

Uses REDIS_URL when set (its DLQ keys for the bench queue are deleted afterwards), else an embedded
server in a temporary home. bench/scenarios/dlq.py and bulk.py reuse fill() and the latency helpers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis

ENTRY_BYTES = 2048  # target size of one entry's JSON
FILL_BATCH = 1000  # DLQStore.add calls per pipeline round trip
KINDS = ("TRANSIENT", "RATE_LIMITED", "TIMEOUT", "UNKNOWN", "PERMANENT", "CRASH")
REASONS = {"PERMANENT": "non_retryable", "CRASH": "crash_loop"}
USERS = 1000
SPREAD_S = 6 * 24 * 3600  # failed_at spread over six days, inside the seven-day retention: nothing expires


def make_store(conn: Redis, queue: str, entries: int):
    from genqueue.dlq.store import DEFAULT_CAP, DLQStore
    from genqueue.settings import DEFAULT_DLQ_RETENTION_S

    # The default cap (100,000) would evict: a bench of N entries needs a cap of at least N.
    return DLQStore(conn, queue, retention_s=DEFAULT_DLQ_RETENTION_S, cap=max(DEFAULT_CAP, entries + 1000))


def _templates(queue: str) -> dict[str, dict[str, Any]]:
    """One entry per kind, built with genqueue's own build_entry, padded so its JSON is ~ENTRY_BYTES."""
    from genqueue.dlq.entry import build_entry, encode

    out = {}
    for kind in KINDS:
        history = [
            {
                "n": n,
                "kind": kind,
                "error": {
                    "type": "ProviderError",
                    "message": "HTTP 503: unavailable",
                    "status_code": 503,
                    "traceback": "",
                },
                "started_at": "2025-01-01T00:00:00.000Z",
                "ended_at": "2025-01-01T00:00:01.000Z",
                "worker": "bench-worker",
                "action": "retry",
                "delay": 5.0,
                "retry_after": None,
                "clipped": False,
                "charged": True,
                "reason": None,
            }
            for n in (1, 2, 3)
        ]
        payload = {"prompt": "", "model": "sim-1", "params": {"temperature": 0.7}, "user_id": "u0"}
        entry = build_entry(
            job_id="x" * 40,
            queue=queue,
            func="genqueue.jobs.generate",
            args=[payload],
            kwargs={},
            reason=REASONS.get(kind, "exhausted"),
            error={
                "kind": kind,
                "type": "ProviderError",
                "message": f"HTTP 503: {kind.lower()}",
                "status_code": 503,
                "traceback": "Traceback (most recent call last): ...",
            },
            history=history,
            retry_count=3,
            crash_count=0,
            enqueued_at="2025-01-01T00:00:00.000Z",
            failed_at=time.time(),
            retention_s=7 * 86400,
        )
        payload["prompt"] = "p" * max(1, ENTRY_BYTES - len(encode(entry)))
        out[kind] = entry
    return out


def entry_id(prefix: str, i: int) -> str:
    return f"{prefix}{i:08d}"


_SLOTS = ("@@JOB@@", "@@USER@@", "@@FAILED@@", "@@EXPIRES@@")


def _split_templates(store) -> dict[str, tuple[list[str], list[int], dict[str, str]]]:
    """Per kind: the template's JSON cut at the placeholders of its varying fields, the slot each gap
    takes, and its index values with the user left out (filled per entry)."""
    import re

    from genqueue.dlq.entry import encode, index_values

    out = {}
    for kind, entry in _templates(store.keys.queue).items():
        marked = {
            **entry,
            "job_id": _SLOTS[0],
            "user_id": _SLOTS[1],
            "failed_at": _SLOTS[2],
            "expires_at": _SLOTS[3],
            "args": [{**entry["args"][0], "user_id": _SLOTS[1]}],
        }
        pieces = re.split("(" + "|".join(map(re.escape, _SLOTS)) + ")", encode(marked))
        texts, slots = pieces[0::2], [_SLOTS.index(p) for p in pieces[1::2]]
        indexes = {k: v for k, v in index_values(marked).items() if k != "user"}
        out[kind] = (texts, slots, indexes)
    return out


def fill(store, n: int, *, prefix: str = "e", start: int = 0, progress: Callable[[int], None] | None = None) -> float:
    """Add n entries (ids prefix + number) in pipelined batches through DLQStore.add_encoded (the same Lua
    as a worker's dead-lettering); returns the mean entry JSON size in bytes. The JSON is assembled from a
    per-kind template cut at its varying fields (id, user, failed_at, expires_at): json.dumps of 2 KB per
    entry would make the fill, not the server, the bench's bottleneck."""
    from genqueue.dlq.entry import iso, parse_iso

    templates = _split_templates(store)
    now = time.time()
    total_bytes = 0
    for batch_start in range(start, start + n, FILL_BATCH):
        with store.connection.pipeline(transaction=False) as pipe:
            for i in range(batch_start, min(start + n, batch_start + FILL_BATCH)):
                texts, slots, indexes = templates[KINDS[i % len(KINDS)]]
                failed_at = now - SPREAD_S + SPREAD_S * (i - start + 1) / max(n, 1)
                job_id, user = entry_id(prefix, i), f"u{i % USERS}"
                values = (job_id, user, iso(failed_at), iso(failed_at + store.retention_s))
                parts = [texts[0]]
                for slot, text in zip(slots, texts[1:], strict=True):
                    parts += (values[slot], text)
                raw = "".join(parts)
                total_bytes += len(raw)
                store.add_encoded(job_id, raw, parse_iso(values[2]), {**indexes, "user": user}, pipe)
            pipe.execute()
        if progress:
            progress(min(start + n, batch_start + FILL_BATCH) - start)
    return total_bytes / max(n, 1)


def drop(store) -> None:
    """Delete every key of this DLQ (entries listed by the `all` index, then the indexes and stats)."""
    conn = store.connection
    while True:
        ids = conn.zrange(store.keys.all, 0, 4999)
        if not ids:
            break
        with conn.pipeline(transaction=False) as pipe:
            pipe.unlink(*(store.keys.entry(i.decode()) for i in ids))
            pipe.zrem(store.keys.all, *ids)
            pipe.execute()
    keys = list(conn.scan_iter(match=store.keys.prefix + "*", count=1000))
    for start in range(0, len(keys), 1000):
        conn.unlink(*keys[start : start + 1000])


def used_memory(conn: Redis) -> int:
    return int(conn.info("memory")["used_memory"])


# -- latencies -----------------------------------------------------------------------------------------------
@dataclass
class Latencies:
    """Median seconds per operation, each from `samples` calls."""

    get_rtt: float
    get: float
    delete: float
    page: float
    filtered: float
    page_p99: float = 0.0
    filtered_p99: float = 0.0
    delete_server: float = 0.0  # the server's own time per delete (INFO commandstats, usec of the script)


def _per_call(fn: Callable[[int], object], samples: int) -> list[float]:
    out = []
    for i in range(samples):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure_latencies(store, *, entries: int, samples: int, prefix: str = "e", seed: int = 1) -> Latencies:
    """One round of each operation on random existing entries. delete removes its samples (re-added after,
    untimed, so repeated rounds see the same DLQ size)."""
    from genqueue.dlq.store import Filters

    rng = random.Random(seed)
    conn = store.connection
    ids = [entry_id(prefix, rng.randrange(entries)) for _ in range(samples)]
    victims = list(dict.fromkeys(entry_id(prefix, rng.randrange(entries)) for _ in range(samples)))
    saved = [store.get(v) for v in victims]
    keys = [store.keys.entry(i) for i in ids]
    rtt = _per_call(lambda i: conn.get(keys[i]), samples)
    get = _per_call(lambda i: store.get(ids[i]), samples)
    before = conn.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0)
    delete = _per_call(lambda i: store.delete(victims[i]), len(victims))
    server = (conn.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0) - before) / 1e6 / len(victims)
    page = _per_call(lambda i: store.page(Filters(), limit=50), samples)
    filtered = _per_call(lambda i: store.page(Filters(kind=KINDS[i % len(KINDS)]), limit=50), samples)
    with conn.pipeline(transaction=False) as pipe:
        for entry in saved:
            store.add(entry, pipeline=pipe)
        pipe.execute()
    med = statistics.median
    return Latencies(med(rtt), med(get), med(delete), med(page), med(filtered), _p99(page), _p99(filtered), server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300, help="calls per operation and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)

    from genqueue.backend.connection import connect_url

    from .scenarios.common import bench_server

    with bench_server() as (url, _home, _embedded):
        conn = connect_url(url)
        store = make_store(conn, f"gqbench-dlq-{int(time.time())}", args.entries)
        try:
            result = run(store, args.entries, samples=args.samples, rounds=args.rounds, log=not args.json)
        finally:
            drop(store)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def run(store, entries: int, *, samples: int, rounds: int, log: bool = True) -> dict[str, Any]:
    """Fill, measure memory, then `rounds` latency rounds; a dict of medians (seconds, bytes)."""
    conn = store.connection
    before = used_memory(conn)
    started = time.perf_counter()

    def progress(done: int) -> None:
        if log and (done % 100_000 == 0 or done == entries):
            rate = done / (time.perf_counter() - started)
            print(f"  filled {done:,}/{entries:,} ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    payload = fill(store, entries, progress=progress)
    fill_s = time.perf_counter() - started
    per_entry = (used_memory(conn) - before) / entries
    rounds_out = [measure_latencies(store, entries=entries, samples=samples, seed=r) for r in range(rounds)]
    med = statistics.median
    result = {
        "entries": entries,
        "fill_s": fill_s,
        "fill_per_s": entries / fill_s,
        "payload_bytes": payload,
        "bytes_per_entry": per_entry,
        "overhead_bytes": per_entry - payload,
        **{f: med(getattr(r, f) for r in rounds_out) for f in Latencies.__dataclass_fields__},
    }
    if log:
        ms = 1000
        print(
            f"entries {entries:,}  fill {fill_s:.1f}s ({entries / fill_s:,.0f}/s)  "
            f"memory {per_entry:,.0f} B/entry for {payload:,.0f} B of JSON (+{per_entry - payload:,.0f} B)"
        )
        print(
            f"GET {result['get_rtt'] * ms:.3f} ms | get {result['get'] * ms:.3f} ms "
            f"({result['get'] / result['get_rtt']:.1f}× GET) | delete {result['delete'] * ms:.3f} ms "
            f"({result['delete'] / result['get_rtt']:.1f}× GET) | page 50 {result['page'] * ms:.2f} ms | "
            f"filtered page 50 {result['filtered'] * ms:.2f} ms"
        )
    return result


if __name__ == "__main__":
    raise SystemExit(main())
