"""genqueue demo — the main job, end to end on the embedded server (or REDIS_URL)."""

from __future__ import annotations

import sys
import time

import click

from .app import get_app
from .params import queue_option
from .render import table

KIND_ORDER = ["TRANSIENT", "RATE_LIMITED", "TIMEOUT", "PERMANENT", "CRASH", "UNKNOWN"]


@click.command(
    help="Run ~200 generation jobs through real workers against a provider that injects faults "
    "(429s, 5xx, timeouts, resets, 401/422, work-horse crashes), with live progress and a "
    "summary by error kind.\n\n\b\nExamples:\n  genqueue demo\n  genqueue demo --jobs 500 --workers 4"
)
@click.option("--jobs", "n_jobs", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--workers", type=click.IntRange(1, 32), default=3, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for payloads (fault draws follow job ids).")
@click.option(
    "--timeout",
    "deadline_s",
    type=click.IntRange(10, 3600),
    default=300,
    show_default=True,
    help="Give up (exit 1) if the jobs are not all done by then.",
)
@queue_option
def demo(n_jobs: int, workers: int, seed: int | None, deadline_s: int, queue: str | None) -> None:
    import random
    import uuid

    from ..jobs.enqueue import enqueue
    from .demo_runner import make_payloads, start_workers, stop_workers, summarise, tally

    app = get_app(queue)
    connection, settings = app.connection, app.settings
    store = app.store()
    run = uuid.uuid4().hex[:6]
    where = settings.redis_url and "REDIS_URL" or f"embedded Valkey at {settings.home}"
    click.echo(f"genqueue demo: {n_jobs} jobs, {workers} forking workers, queue {settings.queue} ({where})")
    log_dir = settings.home / "logs"
    procs = start_workers(settings, workers, log_dir)
    job_ids: list[str] = []
    tty = sys.stdout.isatty()
    try:
        rng = random.Random(seed)
        for i, (payload, max_retries) in enumerate(make_payloads(n_jobs, rng)):
            job_id = f"demo-{run}-{i:04d}"
            enqueue(connection, settings.queue, payload, job_id=job_id, max_retries=max_retries)
            job_ids.append(job_id)
        started = time.monotonic()
        last_print = 0.0
        while True:
            t = tally(connection, store, job_ids)
            now = time.monotonic()
            line = (
                f"[{now - started:5.1f}s] finished {t.finished:4d}  retrying {t.retrying:4d}  "
                f"dead-lettered {t.dead:4d}  running {t.running:3d}  queued {t.queued:4d}"
            )
            if tty:
                click.echo("\r" + line, nl=False)
            elif now - last_print >= 5 or t.done == n_jobs:
                click.echo(line)
                last_print = now
            if t.done == n_jobs:
                break
            if now - started > deadline_s:
                click.echo("")
                raise click.ClickException(f"demo did not finish in {deadline_s}s; worker logs in {log_dir}")
            if not any(p.poll() is None for p in procs):
                click.echo("")
                raise click.ClickException(f"all demo workers exited; see their logs in {log_dir}")
            time.sleep(0.25)
        elapsed = time.monotonic() - started
    finally:
        if tty:
            click.echo("")
        stop_workers(procs)
    s = summarise(connection, store, job_ids)
    click.echo(
        f"\nAll {n_jobs} jobs done in {elapsed:.1f}s: {s.finished} finished "
        f"({s.finished_after_retry} after retries), {len(s.dead_ids)} dead-lettered.\n"
    )
    kinds = [k for k in KIND_ORDER if s.failures_by_kind[k] or s.dead_by_kind[k]]
    rows = [(k, s.failures_by_kind[k], s.retried_by_kind[k], s.dead_by_kind[k]) for k in kinds]
    rows.append(("total", sum(s.failures_by_kind.values()), sum(s.retried_by_kind.values()), len(s.dead_ids)))
    click.echo(table(("error kind", "failed attempts", "retried", "dead-lettered"), rows))
    if s.dead_by_reason:
        click.echo("\nDead-lettered by reason: " + ", ".join(f"{r} {n}" for r, n in s.dead_by_reason.most_common()))
    example = s.dead_ids[0] if s.dead_ids else "JOB_ID"
    q = "" if settings.queue == "generation-queue" else f" --queue {settings.queue}"
    click.echo(f"""
Next, try:
  genqueue dlq list{q}                      # the dead-lettered jobs
  genqueue dlq show {example}{q}   # one entry: payload, every attempt, tracebacks
  genqueue jobs show {example}{q}  # the job's status and decision history
  genqueue dlq retry {example}{q}  # replay it with a fresh retry budget
  genqueue dlq delete {example} --yes{q}
Worker logs: {log_dir}""")
