"""Scenario 5 — bulk replay and export through the CLI, as a user runs them: `genqueue dlq retry --all --yes`
and `genqueue dlq export -o FILE` over N DLQ entries (entries per second, process start-up included).

Baseline for replay: what a bare-RQ user has, `rq requeue --all` over RQ's FailedJobRegistry (one
fetch + ZREM + save + enqueue per job). It runs over fewer jobs (sizes.bulk_baseline): it is a rate, and at
N it alone would take most of the bench's time budget. Export has no RQ counterpart; its goal is absolute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genqueue.tenants.fair import waiting

from .. import dlq as bench_dlq
from .common import Ctx, Scenario, drop_queue, timed


def _cli(ctx: Ctx, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": ctx.url, "GENQUEUE_HOME": str(ctx.home), "GENQUEUE_LOG_FORMAT": "json"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


def _genqueue(*args: str) -> list[str]:
    return [sys.executable, "-m", "genqueue", *args]


def _fill_failed_registry(ctx: Ctx, queue_name: str, n: int) -> None:
    """n failed jobs in RQ's FailedJobRegistry, as RQ itself leaves them (job hash + registry member)."""
    from rq.job import Job, JobStatus
    from rq.registry import FailedJobRegistry

    from genqueue.backend.queues import SERIALIZER
    from genqueue.tasks.generate import JOB_FUNC

    registry = FailedJobRegistry(queue_name, connection=ctx.conn, serializer=SERIALIZER)
    for start in range(0, n, 1000):
        with ctx.conn.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                job = Job.create(
                    JOB_FUNC,
                    args=({"prompt": "p" * 1000},),
                    connection=ctx.conn,
                    serializer=SERIALIZER,
                    id=f"{queue_name}-{i}",
                    origin=queue_name,
                    status=JobStatus.FAILED,
                )
                job.save(pipeline=pipe)
                registry.add(job, ttl=86400, pipeline=pipe)
            pipe.execute()


# -- limit baselines: what Redis itself can do for the same work, from one Python process ------------------
def export_limit(store, path: Path) -> float:
    """Seconds for the raw read an export needs: every id of `all` (newest first, in pages of 1,000), one
    MGET per page, the bytes written to a file — no validation, no masking, no process start-up."""
    conn, all_key = store.connection, store.keys.all
    started = time.perf_counter()
    with path.open("wb") as out:
        start = 0
        while True:
            ids = conn.zrevrange(all_key, start, start + 999)
            if not ids:
                break
            start += len(ids)
            for raw in conn.mget([store.keys.entry(i.decode()) for i in ids]):
                if raw is not None:
                    out.write(raw + b"\n")
    return time.perf_counter() - started


def replay_limit(ctx: Ctx, store, template: dict[bytes, bytes]) -> float:
    """Seconds for the raw writes a replay makes for the entries of `store`: per entry an HSET of a job hash
    like the one a replay writes (`template`, a replayed job's own hash), an RPUSH, and the entry's DEL and
    index ZREMs (grouped per 1,000, as bulk replay groups them) — in pipelines of 1,000 entries, read by
    one ZRANGE + MGET per page as a replay reads them, with no per-entry decision."""
    import json

    from genqueue.dlq.entry import index_values

    conn = ctx.conn
    queue_key = f"rq:queue:{store.keys.queue}"
    started = time.perf_counter()
    while True:
        ids = [i.decode() for i in conn.zrevrange(store.keys.all, 0, 999)]
        if not ids:
            break
        raws = conn.mget([store.keys.entry(i) for i in ids])
        by_index: dict[str, list[str]] = {}
        with conn.pipeline(transaction=False) as pipe:
            for job_id, raw in zip(ids, raws, strict=False):
                for f, v in index_values(json.loads(raw)).items():
                    by_index.setdefault(store.keys.index(f, v), []).append(job_id)
                pipe.hset(f"rq:job:{job_id}", mapping=template)
                pipe.rpush(queue_key, job_id)
            pipe.delete(*(store.keys.entry(i) for i in ids))
            pipe.zrem(store.keys.all, *ids)
            for key, members in by_index.items():
                pipe.zrem(key, *members)
            pipe.execute()
    return time.perf_counter() - started


def run(ctx: Ctx) -> Scenario:
    """One fill of N entries per repetition set: export is read-only, so it runs `reps` times over all N;
    replay empties what it replays, so repetition r replays the r-th slice of failed_at time (N/reps
    entries, chosen with --since/--until, as an admin would)."""
    from genqueue.dlq.entry import iso

    n, base_n, reps = ctx.sizes.bulk_entries, ctx.sizes.bulk_baseline, ctx.reps
    sc = Scenario(
        "bulk",
        f"Bulk replay and export over {n:,} DLQ entries (CLI)",
        sizes={"entries": n, "replayed_per_rep": n // reps, "rq_requeue_jobs": base_n},
    )
    export_rates, replay_rates, rq_rates, export_limits, replay_limits = [], [], [], [], []
    name = ctx.name("bulk")
    store = bench_dlq.make_store(ctx.conn, name, n)
    started = time.time()
    bench_dlq.fill(store, n)
    try:
        for _ in range(reps):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "dlq.jsonl"
                export_rates.append(
                    n / timed(lambda out=out: _cli(ctx, *_genqueue("dlq", "export", "-q", name, "-o", str(out))))
                )
                lines = sum(1 for _ in out.open())
                if lines != n:
                    raise RuntimeError(f"export wrote {lines} lines for {n} entries")
                export_limits.append(n / export_limit(store, Path(tmp) / "raw.jsonl"))
        # fill() spreads failed_at evenly over SPREAD_S before `started`: cut that span into `reps` slices
        low = started - bench_dlq.SPREAD_S
        edges = [low + bench_dlq.SPREAD_S * r / reps for r in range(reps)] + [started + 60]
        for rep in range(reps):
            before = store.count()
            window = ("--since", iso(edges[rep]), "--until", iso(edges[rep + 1]))
            seconds = timed(
                lambda window=window: _cli(
                    ctx, *_genqueue("dlq", "retry", "--all", "--yes", "-q", name, *window, "--json")
                )
            )
            done = before - store.count()
            replay_rates.append(done / seconds)
            queued = waiting(ctx.conn, [name])[name]  # RQ's list and the fair lanes in front of it
            if done < n // reps - 2 or queued != n - store.count():
                raise RuntimeError(f"replay rep {rep}: {done} entries left the DLQ, {queued} jobs queued")
        if store.count():
            raise RuntimeError(f"{store.count()} entries left after replaying every slice")
        template = ctx.conn.hgetall(f"rq:job:{bench_dlq.entry_id('e', 0)}")
    finally:
        bench_dlq.drop(store)
        drop_queue(ctx.conn, name, [bench_dlq.entry_id("e", i) for i in range(n)])

    for rep in range(reps):  # the replay limit, over as many entries as one replay pass took
        limit_name = ctx.name(f"bulk-limit-{rep}")
        limit_store = bench_dlq.make_store(ctx.conn, limit_name, n // reps)
        bench_dlq.fill(limit_store, n // reps)
        try:
            replay_limits.append(n // reps / replay_limit(ctx, limit_store, template))
        finally:
            bench_dlq.drop(limit_store)
            drop_queue(ctx.conn, limit_name, [bench_dlq.entry_id("e", i) for i in range(n // reps)])

    for rep in range(reps):
        rq_name = ctx.name(f"bulk-rq-{rep}")
        _fill_failed_registry(ctx, rq_name, base_n)
        try:
            rq_cmd = [
                sys.executable,
                "-m",
                "rq.cli",
                "requeue",
                "--all",
                "--queue",
                rq_name,
                "-u",
                ctx.url,
                "-S",
                "rq.serializers.JSONSerializer",
            ]
            rq_rates.append(base_n / timed(lambda rq_cmd=rq_cmd: _cli(ctx, *rq_cmd)))
            if ctx.conn.llen(f"rq:queue:{rq_name}") != base_n:
                raise RuntimeError("rq requeue did not requeue every job")
        finally:
            drop_queue(ctx.conn, rq_name, [f"{rq_name}-{i}" for i in range(base_n)])

    replay = sc.measure("replay", "entries/s", replay_rates, system="genqueue")
    rq = sc.measure("replay", "entries/s", rq_rates, system="rq")
    sc.metrics["replay"]["ratio"] = replay / rq
    status = sc.goal("bulk: dlq retry --all ≥ 5,000 entries/s", replay, 5000, higher_is_better=True, unit="/s")
    sc.row(
        "dlq retry --all --yes",
        f"{rq:,.0f}/s (rq requeue --all)",
        f"{replay:,.0f}/s",
        f"{replay / rq:.2f}×",
        "≥ 5,000/s",
        status,
    )
    limit = sc.measure("replay_limit", "entries/s", replay_limits, system="limit")
    status = sc.goal("bulk: dlq retry --all ≥ 0.5× the replay limit", replay / limit, 0.5, higher_is_better=True)
    sc.row(
        "dlq retry --all vs the limit",
        f"{limit:,.0f}/s (raw pipeline, same writes)",
        f"{replay:,.0f}/s",
        f"{replay / limit:.2f}×",
        "≥ 0.50×",
        status,
    )
    export = sc.measure("export", "entries/s", export_rates, system="genqueue")
    status = sc.goal("bulk: dlq export ≥ 20,000 entries/s", export, 20000, higher_is_better=True, unit="/s")
    sc.row("dlq export", "", f"{export:,.0f}/s", "", "≥ 20,000/s", status)
    limit = sc.measure("export_limit", "entries/s", export_limits, system="limit")
    status = sc.goal("bulk: dlq export ≥ 0.5× the export limit", export / limit, 0.5, higher_is_better=True)
    sc.row(
        "dlq export vs the limit",
        f"{limit:,.0f}/s (raw MGET to a file)",
        f"{export:,.0f}/s",
        f"{export / limit:.2f}×",
        "≥ 0.50×",
        status,
    )
    sc.notes.append(
        f"rates include the CLI process's start-up; each replay pass takes one time slice (~{n // reps:,} "
        f"entries) of the {n:,}; rq requeue --all ran over {base_n:,} failed jobs per repetition"
    )
    return sc
