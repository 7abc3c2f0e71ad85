"""Scenario 3 — failure path: N jobs that fail 3 times, then succeed, with zero backoff, drained in burst mode
by one simple worker. genqueue: GenSimpleWorker with policy TRANSIENT base 0 (the job raises an HTTP-503
shaped error, classified TRANSIENT, max 5 retries). Bare RQ: SimpleWorker with the jobs' Retry(max=3).
Both really retry: every job must end finished with 3 failed attempts behind it (checked).

Redis commands per failed attempt (INFO commandstats delta, which also counts the commands run inside Lua
scripts and MULTI blocks): a drain of failing jobs minus a drain of the same number of jobs that succeed
at once, divided by the failed attempts; measured in an extra untimed pass per system.
"""

from __future__ import annotations

from collections import Counter

from .common import Ctx, Scenario, alternate, compare, counting, drop_queue
from .jobs import FLAKY
from .success import check_finished, drain, fill_queue, make_worker

FAILURES = 3
COUNT_JOBS = 200  # jobs in the command-counting pass


def _options(system: str, fail: int) -> dict:
    from rq import Retry

    from genqueue.retry.meta import new_meta

    if system == "rq":
        return {"retry": Retry(max=FAILURES), "meta": {"bench_retries": FAILURES}}
    return {"meta": new_meta()}  # what genqueue.jobs.enqueue.enqueue attaches


def _settings(ctx: Ctx, name: str):
    from genqueue.settings import Settings

    return Settings(redis_url=ctx.url, home=ctx.home, queue=name, policy_overrides={"TRANSIENT": {"base": 0}})


def _check_retried(ctx: Ctx, system: str, ids: list[str], fail: int) -> None:
    """Every job (up to 100 sampled) failed exactly `fail` times before finishing."""
    from rq.job import Job

    from genqueue.backend.queues import SERIALIZER

    from .jobs import failed_attempts

    for job in Job.fetch_many(ids[:: max(1, len(ids) // 100)], connection=ctx.conn, serializer=SERIALIZER):
        got = failed_attempts(job)
        if got != fail:
            raise RuntimeError(f"{system} job {job.id}: {got} failed attempts, expected {fail}")


def _drain_jobs(ctx: Ctx, system: str, label: str, n: int, fail: int) -> float:
    from genqueue.limits.rules import generate_key
    from genqueue.limits.store import set_limits

    # Every call fails here on purpose, so the provider key's breaker would open (and park the jobs for its
    # cooldown) after 5: off for this key, this scenario measures the retry path itself.
    set_limits(ctx.conn, generate_key("simulated", {}), cooldown_s=0)
    name = ctx.name(label)
    ids = fill_queue(ctx, name, n, func=FLAKY, payload=lambda i: {"fail": fail}, **_options(system, fail))
    worker = make_worker(ctx, system, name, simple=True, settings=_settings(ctx, name))
    try:
        seconds = drain(worker)
        check_finished(ctx, name, n)
        _check_retried(ctx, system, ids, fail)
        return seconds
    finally:
        drop_queue(ctx.conn, name, ids)


def commands_per_failed_attempt(ctx: Ctx, system: str, n: int) -> tuple[float, dict[str, float]]:
    counts = {}
    for fail in (0, FAILURES):
        with counting(ctx.conn) as delta:
            _drain_jobs(ctx, system, f"cmd-{system}-{fail}", n, fail)
        counts[fail] = delta
    extra = Counter(counts[FAILURES])
    extra.subtract(counts[0])
    attempts = n * FAILURES
    per_command = {k: round(v / attempts, 2) for k, v in extra.most_common() if v / attempts >= 0.05}
    return sum(extra.values()) / attempts, per_command


def run(ctx: Ctx) -> Scenario:
    n = ctx.sizes.failure_jobs
    attempts = n * (FAILURES + 1)
    sc = Scenario(
        "failure",
        f"Failure path: {n:,} jobs failing {FAILURES}× then succeeding, zero backoff, simple worker",
        sizes={"jobs": n, "failures_per_job": FAILURES, "attempts": attempts},
    )
    runs = alternate(
        ctx.reps,
        {
            "rq": lambda rep: attempts / _drain_jobs(ctx, "rq", f"fail-rq-{rep}", n, FAILURES),
            "genqueue": lambda rep: attempts / _drain_jobs(ctx, "genqueue", f"fail-gq-{rep}", n, FAILURES),
        },
    )
    compare(
        sc,
        "drain",
        f"{attempts:,} attempts ({n:,} jobs)",
        runs["rq"],
        runs["genqueue"],
        unit="attempts/s",
        higher_is_better=True,
        goal=1.05,
    )
    count_n = min(n, COUNT_JOBS)
    rq_cmds, rq_top = commands_per_failed_attempt(ctx, "rq", count_n)
    gq_cmds, gq_top = commands_per_failed_attempt(ctx, "genqueue", count_n)
    sc.metrics["commands_per_failed_attempt"] = {
        "rq": {"median": rq_cmds, "unit": "commands", "by_command": rq_top},
        "genqueue": {"median": gq_cmds, "unit": "commands", "by_command": gq_top},
        "jobs_counted": count_n,
    }
    sc.row("Redis commands per failed attempt", f"{rq_cmds:.1f}", f"{gq_cmds:.1f}", f"{rq_cmds / gq_cmds:.2f}×")
    sc.notes.append(
        "commands per failed attempt, top (per attempt): rq " + _fmt(rq_top) + " | genqueue " + _fmt(gq_top)
    )
    return sc


def _fmt(top: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in list(top.items())[:8])
