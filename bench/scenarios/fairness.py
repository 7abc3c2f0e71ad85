"""Scenario — fair scheduling across tenants, and what the fair pop costs.

1. Tenant A enqueues N jobs of 50 ms, then (once A's backlog is under way) tenant B enqueues 5, on 4 workers
   (real `genqueue worker --simple` processes). Measured: for each of B's jobs, how many jobs were taken
   after it was enqueued and before it started (its position in the start order). "Today's FIFO" is the same
   run with no tenant on any job: then every job is in one share, taken in enqueue order, which is what a
   single RQ list does (the lanes add nothing to the order). Goal: each of B's jobs within the next 8.
2. Weights 3:1, both tenants with a backlog: the share of jobs taken while both have one. Goal: within 10 %
   of 3:1.
3. The pop's own time (guarded.pop, in-process, no job run) on a queue of 100,000 jobs spread over 1 tenant
   and over 1,000 tenants: the fair pop looks at three ring heads and one lane each, so it is flat.
4. Priorities: one `high` job enqueued behind N `normal` ones (one tenant, so fairness plays no part) once
   they are under way: the jobs taken after it was enqueued and before it started. Beside it, the same job at
   `normal` (today's order for it). Goal: within the next 4.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from genqueue.tenants.fairness import FAIR_BUFFER

from .common import Ctx, Scenario, alternate, drop_queue, median, stop_processes
from .jobs import MARK

ROOT = Path(__file__).resolve().parents[2]
B_JOBS = 5
B_GOAL = 8  # jobs taken after a B job is enqueued, before it starts
HIGH_GOAL = 4  # jobs taken after a high-priority job is enqueued, before it starts
WEIGHT_JOBS = 600  # per tenant in the weights run (full size; the smoke run scales it down)


def _enqueue(
    ctx: Ctx, queue: str, n: int, log: str, ms: int, tenant: str | None, priority: str | None = None
) -> list[str]:
    from genqueue.backend.queues import make_queue
    from genqueue.jobs.submit import submit
    from genqueue.retry.meta import new_meta

    q = make_queue(ctx.conn, queue)
    ids = []
    for start in range(0, n, 500):
        with ctx.conn.pipeline(transaction=False) as pipe:
            for _ in range(start, min(n, start + 500)):
                meta = new_meta(None, tenant=tenant)
                if priority:
                    meta["genqueue"]["priority"] = priority
                job = q.create_job(MARK, args=({"log": log, "ms": ms},), meta=meta)
                submit(q, job, pipeline=pipe)
                ids.append(job.id)
            pipe.execute()
    return ids


def _workers(ctx: Ctx, queue: str, n: int, *, burst: bool = False) -> list[subprocess.Popen]:
    """Real worker processes, their output in <home>/<queue>-w<i>.log (named when a run goes wrong)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(
        REDIS_URL=ctx.url,
        GENQUEUE_HOME=str(ctx.home),
        GENQUEUE_LOG_FORMAT="json",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
    )
    cmd = [sys.executable, "-m", "genqueue", "worker", "--queue", queue, "--simple", "--tasks", "bench.scenarios.jobs"]
    cmd += ["--burst"] if burst else []
    procs = []
    for i in range(n):
        with open(ctx.home / f"{queue}-w{i}.log", "wb") as out:
            procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
    return procs


def _all_exited(procs: list[subprocess.Popen]) -> bool:
    return all(p.poll() is not None for p in procs)


def _stop(ctx: Ctx, queue: str, procs: list[subprocess.Popen]) -> None:
    """SIGTERM, then wait: a worker that had exited already is a failed run (its status and last line said)."""
    early = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() is not None]
    stop_processes(procs)
    if early:
        lines = []
        for i, code in early:
            tail = (ctx.home / f"{queue}-w{i}.log").read_text(errors="replace").strip().splitlines()[-1:]
            lines.append(f"worker {i} exited {code}: {tail[0][:300] if tail else ''}")
        raise RuntimeError(f"{queue}: " + "; ".join(lines))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _drop(ctx: Ctx, queue: str, ids: list[str], *extra: str) -> None:
    from genqueue.backend import keys

    drop_queue(ctx.conn, queue, ids)
    fair_keys = list(ctx.conn.scan_iter(match=keys.fair(queue) + "*", count=1000))
    if fair_keys or extra:
        ctx.conn.unlink(*fair_keys, *extra)


def _clean_up(ctx: Ctx, queue: str, procs: list[subprocess.Popen], ids: list[str], log: str) -> None:
    """A run's end, whatever happened: its workers killed, its keys and its worker logs gone."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    _drop(ctx, queue, ids, log)
    for i in range(len(procs)):
        (ctx.home / f"{queue}-w{i}.log").unlink(missing_ok=True)


def _burst_run(ctx: Ctx, rep: int, fair: bool) -> dict[str, float]:
    """A's backlog, then B's 5 while it runs: each B job's wait, in jobs taken after it was enqueued."""
    n, ms = ctx.sizes.fair_jobs, ctx.sizes.fair_ms
    queue = ctx.name(f"fair-{'on' if fair else 'fifo'}-{rep}")
    log = queue + ":started"
    ids = _enqueue(ctx, queue, n, log, ms, "a" if fair else None)
    procs = _workers(ctx, queue, ctx.sizes.fair_workers)
    try:
        _wait(lambda: ctx.conn.llen(log) >= min(n // 10, 100), 120, "A's backlog to be under way")
        taken_before = {}
        for _ in range(B_JOBS):
            [job_id] = _enqueue(ctx, queue, 1, log, ms, "b" if fair else None)
            taken_before[job_id] = ctx.conn.llen(log)
            ids.append(job_id)
        _wait(lambda: ctx.conn.llen(log) >= len(ids) or _all_exited(procs), 600, f"{queue}: every job to start")
        _stop(ctx, queue, procs)
        order = [raw.decode() for raw in ctx.conn.lrange(log, 0, -1)]
        if sorted(order) != sorted(ids):
            raise RuntimeError(f"{queue}: {len(order)} of {len(ids)} jobs started")
        waits = [order.index(j) - before for j, before in taken_before.items()]
        return {"first": waits[0], "worst": max(waits)}
    finally:
        _clean_up(ctx, queue, procs, ids, log)


def _priority_run(ctx: Ctx, rep: int, priority: str) -> float:
    """N normal jobs of one tenant under way, then one at `priority`: the jobs taken before it started."""
    n, ms = ctx.sizes.fair_jobs, ctx.sizes.fair_ms
    queue = ctx.name(f"prio-{priority}-{rep}")
    log = queue + ":started"
    ids = _enqueue(ctx, queue, n, log, ms, "a")
    procs = _workers(ctx, queue, ctx.sizes.fair_workers)
    try:
        _wait(lambda: ctx.conn.llen(log) >= min(n // 10, 100), 120, "the normal backlog to be under way")
        [job_id] = _enqueue(ctx, queue, 1, log, ms, "a", priority)
        before = ctx.conn.llen(log)
        ids.append(job_id)
        _wait(lambda: job_id.encode() in ctx.conn.lrange(log, before, -1) or _all_exited(procs), 600, f"{queue}: it")
        _stop(ctx, queue, procs)
        order = [raw.decode() for raw in ctx.conn.lrange(log, 0, -1)]
        if job_id not in order:
            raise RuntimeError(f"{queue}: the {priority} job never started")
        return order.index(job_id) - before
    finally:
        _clean_up(ctx, queue, procs, ids, log)


def _weights_run(ctx: Ctx, rep: int) -> float:
    """A (weight 3) and B (weight 1), each with a backlog: A's jobs per B job while both had one."""
    from genqueue.tenants.weights import set_weight

    per = WEIGHT_JOBS if not ctx.smoke else 40
    queue = ctx.name(f"fair-weights-{rep}")
    log = queue + ":started"
    heavy, light = ctx.name("w3"), ctx.name("w1")
    set_weight(ctx.conn, heavy, 3)
    try:
        a = _enqueue(ctx, queue, per, log, 0, heavy)
        b = _enqueue(ctx, queue, per, log, 0, light)
        procs = _workers(ctx, queue, ctx.sizes.fair_workers)
        try:
            _wait(lambda: ctx.conn.llen(log) >= 2 * per or _all_exited(procs), 600, f"{queue}: every job to start")
        finally:
            _stop(ctx, queue, procs)
        order = [raw.decode() for raw in ctx.conn.lrange(log, 0, -1)]
        window = order[: per + per // 3]  # A's backlog lasts until about 4/3 × per jobs are taken
        in_a = set(a)
        n_a = sum(1 for j in window if j in in_a)
        return n_a / max(1, len(window) - n_a)
    finally:
        set_weight(ctx.conn, heavy, 1)
        _drop(ctx, queue, a + b, log)


def _pop_run(ctx: Ctx, tenants: int) -> float:
    """µs per pop on a queue of pop_jobs jobs over `tenants` tenants (the pop only: no job is run)."""
    from genqueue.backend import keys
    from genqueue.backend.queues import make_queue
    from genqueue.worker.guarded import pop, recorder

    queue = ctx.name(f"fair-pop-{tenants}")
    n = ctx.sizes.pop_jobs
    ids: list[str] = []
    per = max(1, n // tenants)
    for t in range(tenants):
        ids += _enqueue(ctx, queue, per, queue + ":unused", 0, f"t{t}")
    q = make_queue(ctx.conn, queue)
    samples = min(ctx.sizes.pop_samples, len(ids))
    try:
        started = time.perf_counter()
        for _ in range(samples):
            if pop(ctx.conn, recorder(ctx.conn), queue, q.intermediate_queue_key, keys.RQ_JOB_PREFIX) is None:
                raise RuntimeError(f"{queue}: empty after fewer than {samples} pops")
        return (time.perf_counter() - started) / samples * 1e6
    finally:
        _drop(ctx, queue, ids)


def run(ctx: Ctx) -> Scenario:
    n = ctx.sizes.fair_jobs
    sc = Scenario(
        "fairness",
        "Fair scheduling: tenant A's backlog then tenant B's 5 jobs; weights; the pop's cost",
        sizes={"a_jobs": n, "job_ms": ctx.sizes.fair_ms, "workers": ctx.sizes.fair_workers, "b_jobs": B_JOBS},
    )
    fifo = [_burst_run(ctx, rep, fair=False) for rep in range(ctx.reps)]
    fair = [_burst_run(ctx, rep, fair=True) for rep in range(ctx.reps)]
    for key, label in (("first", "B's first job"), ("worst", f"B's slowest of {B_JOBS} jobs")):
        before = sc.measure(f"b_{key}", "jobs", [r[key] for r in fifo], system="fifo")
        after = sc.measure(f"b_{key}", "jobs", [r[key] for r in fair], system="fair")
        goal = status = ""
        if key == "first":
            goal = f"≤ {B_GOAL} jobs"
            status = sc.goal(f"fairness: {label} starts within {B_GOAL} jobs", after, B_GOAL, higher_is_better=False)
        sc.row(f"{label}: jobs taken before it starts", f"{before:,.0f} (FIFO)", f"{after:,.0f}", "", goal, status)
    normal = sc.measure("high", "jobs", [_priority_run(ctx, rep, "normal") for rep in range(ctx.reps)], system="fifo")
    high = sc.measure("high", "jobs", [_priority_run(ctx, rep, "high") for rep in range(ctx.reps)], system="fair")
    status = sc.goal(f"priorities: a high job starts within {HIGH_GOAL} jobs", high, HIGH_GOAL, higher_is_better=False)
    sc.row(
        f"a high job behind {n:,} normal ones: jobs taken before it starts",
        f"{normal:,.0f} (as normal)",
        f"{high:,.0f}",
        "",
        f"≤ {HIGH_GOAL} jobs",
        status,
    )
    ratio = sc.measure("weights", "A:B", [_weights_run(ctx, rep) for rep in range(ctx.reps)], system="fair")
    status = sc.goal("fairness: weights 3:1 give 3:1 within 10 %", abs(ratio - 3) / 3, 0.10, higher_is_better=False)
    sc.row("weights 3:1, both with a backlog: jobs taken A:B", "", f"{ratio:.2f}:1", "", "3:1 ± 10 %", status)
    pops = alternate(ctx.reps, {"1": lambda _rep: _pop_run(ctx, 1), "1000": lambda _rep: _pop_run(ctx, 1000)})
    one = sc.measure("pop_1", "µs", pops["1"], system="fair")
    many = sc.measure("pop_1000", "µs", pops["1000"], system="fair")
    flat = many / one
    status = sc.goal("fairness: pop time flat from 1 to 1,000 tenants", flat, 1.25, higher_is_better=False)
    sc.row(
        f"pop, {ctx.sizes.pop_jobs:,} jobs over 1 vs 1,000 tenants",
        f"{one:,.0f} µs (1 tenant)",
        f"{many:,.0f} µs",
        f"{flat:.2f}×",
        "≤ 1.25×",
        status,
    )
    sc.notes.append(
        f"B's jobs are enqueued one after another once A's backlog is under way; the k-th waits for the buffer "
        f"({FAIR_BUFFER} jobs), the jobs already popped and one of A's per B job before it, so B's slowest of {B_JOBS} "
        "is about 2 × 5 + 4 at weights 1:1 (a fair share cannot do better for a burst); FIFO is the same run "
        f"with no tenant on any job. Median of {ctx.reps}: {median([r['worst'] for r in fair]):.0f} vs "
        f"{median([r['worst'] for r in fifo]):,.0f}."
    )
    return sc
