"""Scenario — a 429 storm (issue 21): N generate jobs, W simple worker processes, the simulated provider
limited to R calls/s across all of them (GENQUEUE_SIM_RATE_LIMIT, 429 + the exact Retry-After beyond it).

Three systems in the same run, against the same provider and the same shared limit (its calls and 429s are
counted by the provider itself, keys.SIM_STATS):
- bare RQ, the anchor: W plain `rq worker --with-scheduler` processes (SimpleWorker, as genqueue's are simple;
  JSON serializer), the jobs enqueued with RQ's own `Retry(max=8, interval=[1, 2, 4, 8, 16, 32, 60, 60])`
  running bench.scenarios.jobs.provider_call (the same provider call as genqueue's generate). A 429 just
  fails the job; RQ's scheduler (one of the workers holds its lock, polling every second) puts it back
  after the interval. Jobs still failing after 8 retries end in RQ's FailedJobRegistry: failed for good.
- genqueue with the limit declared (`genqueue limits set simulated:<model> --rate R/s`);
- genqueue with none (the key's pause learning from Retry-After alone).

Reported: makespan ÷ the ideal N/R, provider calls per finished job, the 429 share, and jobs failed for good
(RQ's failed registry, genqueue's DLQ); the ratio column is bare RQ's figure ÷ genqueue's. Goals (the
issue's): declared ≤ 1.1× ideal and ≤ 1.02 calls per job; undeclared ≤ 1.5× ideal and ≤ 1.3 calls per
job; no dead letters. The three run in a rotating order each repetition, so drift hits all alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .common import Ctx, Scenario, drop_queue, stop_processes

JOBS, RATE, WORKERS = 200, 5, 4
SMOKE_JOBS, SMOKE_RATE = 20, 20
RQ_RETRY_MAX, RQ_RETRY_INTERVALS = 8, [1, 2, 4, 8, 16, 32, 60, 60]
SYSTEMS = ("rq", "declared", "undeclared")


def _env(ctx: Ctx, queue: str, rate: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(
        GENQUEUE_HOME=str(ctx.home),
        GENQUEUE_QUEUE=queue,
        GENQUEUE_SIM_RATE_LIMIT=f"{rate}/s",
        GENQUEUE_SIM_RATES="ok=1",
        GENQUEUE_SIM_LATENCY="0.05",
        GENQUEUE_LOG_FORMAT="json",
        REDIS_URL=ctx.url,
    )
    return env


def _worker_args(ctx: Ctx, mode: str, queue: str) -> list[str]:
    if mode == "rq":
        return [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--with-scheduler",
            "--worker-class",
            "rq.SimpleWorker",
            "--serializer",
            "json",
            "--url",
            ctx.url,
            "--path",
            os.getcwd(),
            queue,
        ]
    return [sys.executable, "-m", "genqueue", "worker", "--simple"]


def _enqueue(ctx: Ctx, mode: str, queue: str, model: str, jobs: int) -> list[str]:
    payloads = [{"prompt": f"p{i}", "model": model} for i in range(jobs)]
    if mode == "rq":
        from rq import Queue, Retry

        from genqueue.backend.queues import make_queue

        from .jobs import PROVIDER_CALL

        ids = [f"{queue}-{i}" for i in range(jobs)]
        make_queue(ctx.conn, queue).enqueue_many(
            [
                Queue.prepare_data(
                    PROVIDER_CALL,
                    (payload,),
                    job_id=job_id,
                    meta={"bench_retries": RQ_RETRY_MAX},
                    retry=Retry(max=RQ_RETRY_MAX, interval=RQ_RETRY_INTERVALS),
                )
                for job_id, payload in zip(ids, payloads, strict=True)
            ]
        )
        return ids
    from genqueue.jobs.enqueue import enqueue_many

    return [j.id for j in enqueue_many(ctx.conn, queue, payloads)]


def _count(ctx: Ctx, mode: str, queue: str, ids: list[str]) -> tuple[int, int]:
    """(finished, failed for good): RQ's failed status after its last retry, genqueue's DLQ entries."""
    from rq.job import Job

    from genqueue.backend.queues import SERIALIZER
    from genqueue.dlq.store import DLQStore

    statuses = [
        j.get_status(refresh=False) if j is not None else None
        for j in Job.fetch_many(ids, connection=ctx.conn, serializer=SERIALIZER)
    ]
    done = statuses.count("finished")
    if mode == "rq":
        return done, statuses.count("failed")
    return done, DLQStore(ctx.conn, queue, retention_s=3600).count()


def _run(ctx: Ctx, mode: str, jobs: int, rate: int) -> dict[str, float]:
    from genqueue.backend import keys
    from genqueue.limits.store import set_limits

    queue = ctx.name(f"storm-{mode}-{time.monotonic_ns()}")
    model = f"{queue}-model"
    ctx.conn.delete(keys.SIM_WINDOW, keys.SIM_STATS)
    if mode == "declared":
        set_limits(ctx.conn, f"simulated:{model}", rate=f"{rate}/s")
    env = _env(ctx, queue, rate)
    procs = [
        subprocess.Popen(_worker_args(ctx, mode, queue), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]
    done = dead = 0
    ids: list[str] = []
    try:
        time.sleep(1.0)  # let the workers start (their start-up is not what this measures)
        started = time.perf_counter()
        ids = _enqueue(ctx, mode, queue, model, jobs)
        deadline = started + 30 * jobs / rate + 60
        while time.perf_counter() < deadline:
            done, dead = _count(ctx, mode, queue, ids)
            if done + dead >= jobs:
                break
            time.sleep(0.2)
        makespan = time.perf_counter() - started
    finally:
        stop_processes(procs)
    stats = {k.decode(): int(v) for k, v in ctx.conn.hgetall(keys.SIM_STATS).items()}
    if mode == "rq":
        drop_queue(ctx.conn, queue, ids)
    calls, limited = stats.get("calls", 0), stats.get("rate_limited", 0)
    return {
        "makespan_x": makespan / (jobs / rate),
        "calls_per_job": calls / max(1, done),
        "share_429": limited / max(1, calls),
        "dead": float(dead),
        "finished": float(done),
        "makespan_s": makespan,
    }


def run(ctx: Ctx) -> Scenario:
    jobs, rate = (SMOKE_JOBS, SMOKE_RATE) if ctx.smoke else (JOBS, RATE)
    sc = Scenario(
        "storm",
        f"{jobs} jobs, {WORKERS} simple workers, the provider limited to {rate} calls/s (429 + Retry-After beyond it)",
        sizes={
            "jobs": jobs,
            "rate": rate,
            "workers": WORKERS,
            "rq_retry": {"max": RQ_RETRY_MAX, "interval": RQ_RETRY_INTERVALS},
        },
    )
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in SYSTEMS}
    for rep in range(ctx.reps):
        shift = rep % len(SYSTEMS)
        for mode in SYSTEMS[shift:] + SYSTEMS[:shift]:
            runs[mode].append(_run(ctx, mode, jobs, rate))
    med: dict[str, dict[str, float]] = {}
    for mode in SYSTEMS:
        system = "rq" if mode == "rq" else "genqueue"
        for key in runs[mode][0]:
            sc.measure(f"{mode}_{key}", "", [r[key] for r in runs[mode]], system=system)
        med[mode] = {key: sc.metrics[f"{mode}_{key}"][system]["median"] for key in runs[mode][0]}
    rq = med["rq"]
    rq_fate = f"{rq['share_429']:.0%} / {rq['dead']:.0f}"
    for mode, makespan_goal, calls_goal in (("declared", 1.1, 1.02), ("undeclared", 1.5, 1.3)):
        m = med[mode]
        sc.row(
            f"{mode}: makespan ÷ ideal ({jobs / rate:.0f} s)",
            f"{rq['makespan_x']:.2f}×",
            f"{m['makespan_x']:.2f}×",
            f"{rq['makespan_x'] / m['makespan_x']:.2f}×",
            f"≤ {makespan_goal}×",
            sc.goal(f"storm {mode} makespan", m["makespan_x"], makespan_goal, higher_is_better=False, unit="×"),
        )
        sc.row(
            f"{mode}: provider calls per job",
            f"{rq['calls_per_job']:.2f}",
            f"{m['calls_per_job']:.2f}",
            f"{rq['calls_per_job'] / m['calls_per_job']:.2f}×",
            f"≤ {calls_goal}",
            sc.goal(f"storm {mode} calls per job", m["calls_per_job"], calls_goal, higher_is_better=False),
        )
        finished = m["finished"] / jobs  # every job finished: none dead-lettered, none stranded
        sc.row(
            f"{mode}: 429 share / failed for good",
            rq_fate,
            f"{m['share_429']:.0%} / {m['dead']:.0f}",
            "",
            "0 dead",
            sc.goal(f"storm {mode}: every job finished", finished, 1.0, higher_is_better=True),
        )
    sc.notes.append(
        f"bare RQ: {WORKERS} `rq worker --with-scheduler` (SimpleWorker), Retry(max={RQ_RETRY_MAX}, "
        f"interval={RQ_RETRY_INTERVALS}); {rq['finished']:.0f}/{jobs} finished, {rq['dead']:.0f} failed "
        f"for good, makespan {rq['makespan_s']:.1f} s (ideal {jobs / rate:.0f} s)"
    )
    return sc
