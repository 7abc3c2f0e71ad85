"""genqueue runs submit / show / retry-failed."""

from __future__ import annotations

import os
import sys
import time

import click

from ..errors import InvalidInput
from ..tenants.fairness import PRIORITIES
from .app import get_app
from .params import json_option, queue_option
from .render import emit_json, short, table

FAILED_SHOWN = 50


@click.group(
    help="Runs: a batch of generation jobs submitted, watched and retried as one unit.\n\n\b\nExamples:\n"
    "  genqueue runs submit prompts.jsonl --run-id batch-42\n"
    "  genqueue runs show batch-42 --watch\n"
    "  genqueue runs retry-failed batch-42 --max-retries 3"
)
def runs() -> None:
    pass


def _read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return click.open_file("-").read().splitlines()  # stdin; click.get_text_stream: deprecated in 8.5
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except OSError as exc:
        raise InvalidInput(f"cannot read run file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"run file {path!r} is not UTF-8 text") from None


@runs.command(
    help="Submit a run: one JSON payload per line, item i gets the job id <run_id>-item-<i>.\n\n"
    "Resubmitting the same file (same --run-id, or none: the id is derived from the content) "
    "creates only items that exist nowhere yet, so nothing runs twice.\n\n\b\nExamples:\n"
    "  genqueue runs submit prompts.jsonl --run-id batch-42 --max-retries 2\n"
    "  cat prompts.jsonl | genqueue runs submit - --json"
)
@click.argument("file", metavar="FILE.jsonl")
@click.option("--run-id", default=None, help="The run's id (default: run-<digest of the file and options>).")
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=None,
    help="Each item's automatic retry budget (overrides the kinds' maximum).",
)
@click.option(
    "--task",
    default=None,
    metavar="NAME",
    help="Run this task for every item, each line its keyword arguments (default: generate, each line a payload).",
)
@click.option(
    "--tasks",
    "task_modules",
    default=None,
    metavar="MODULE[,MODULE]",
    help="Import these task modules (default $GENQUEUE_TASKS) so every line is checked against the "
    "task's signature first.",
)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES, case_sensitive=False),
    default=None,
    help="Every item's place among the queue's jobs: high, normal or low (default: the task's, else normal).",
)
@queue_option
@json_option
def submit(file, run_id, max_retries, task, task_modules, priority, queue, as_json) -> None:
    from ..runs.rules import check_run_id, parse_run_file
    from ..runs.store import submit as do_submit
    from ..tasks.registry import import_task_modules

    app = get_app(queue, as_json)
    if task is not None:
        import_task_modules(task_modules.split(",") if task_modules is not None else app.settings.tasks)
    payloads = parse_run_file(_read_lines(file), task)  # before connecting: bad input never needs the server
    if run_id is not None:
        check_run_id(run_id)
    result = do_submit(
        app.connection,
        app.settings.queue,
        payloads,
        run_id=run_id,
        max_retries=max_retries,
        ttl_s=app.settings.dlq_retention_s,
        source=None if file == "-" else os.path.basename(file),
        task=task,
        priority=priority,
    )
    run = result.run
    if as_json:
        emit_json(
            {
                "run_id": run.run_id,
                "queue": run.queue,
                "items": run.items,
                "created": result.created,
                "enqueued": result.enqueued,
                "existing": run.items - result.enqueued,
            }
        )
    elif result.created:
        click.echo(f"submitted run {run.run_id}: {result.enqueued} item(s) on {run.queue}")
    else:
        click.echo(
            f"run {run.run_id} was submitted before: {result.enqueued} missing item(s) enqueued, "
            f"{run.items - result.enqueued} already there (not enqueued again)"
        )


@runs.command(
    help="A run's status and its items counted by status; --watch shows a progress bar until it "
    "stops running.\n\nThe run records its queue, so no --queue is needed.\n\n\b\nExamples:\n"
    "  genqueue runs show batch-42\n  genqueue runs show batch-42 --watch\n"
    "  genqueue runs show batch-42 --json"
)
@click.argument("run_id")
@click.option("--watch", is_flag=True, help="Show a progress bar until the run is no longer running.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --watch.",
)
@json_option
def show(run_id, watch, interval, as_json) -> None:
    from ..runs.rules import check_run_id
    from ..runs.store import snapshot

    check_run_id(run_id)
    app = get_app(None, as_json)
    ttl_s = app.settings.dlq_retention_s
    snap = snapshot(app.connection, run_id, ttl_s=ttl_s, details=not watch)
    if watch and snap.status == "running":
        _watch(app, run_id, snap, interval, ttl_s)
    if watch:
        snap = snapshot(app.connection, run_id, ttl_s=ttl_s)
    if as_json:
        emit_json(snap.to_dict())
        return
    _print_run(snap.to_dict())


def _counts_label(counts: dict[str, int]) -> str:
    return " ".join(f"{status} {n}" for status, n in counts.items())


def _watch(app, run_id: str, snap, interval: float, ttl_s: int) -> None:
    from ..runs.store import snapshot

    # stderr, like the DLQ bulk commands: stdout stays the final result (and valid JSON with --json).
    with click.progressbar(
        length=snap.run.items, label=_counts_label(snap.counts), file=sys.stderr, show_pos=True, show_percent=True
    ) as bar:
        bar.update(snap.done)
        while snap.status == "running":
            time.sleep(interval)
            snap = snapshot(app.connection, run_id, ttl_s=ttl_s, details=False)
            bar.label = _counts_label(snap.counts)
            bar.update(snap.done - bar.pos)  # negative when someone retries items meanwhile


def _print_run(info: dict) -> None:
    for key in (
        "run_id",
        "queue",
        "status",
        "items",
        "done",
        "created_at",
        "source",
        "max_retries",
        "retries",
        "last_retry_at",
    ):
        if info.get(key) is not None:
            click.echo(f"{key + ':':<15}{info[key]}")
    click.echo("\n" + table(("status", "items"), list(info["counts"].items())))
    failed = info["failed_items"]
    if failed:
        rows = [
            (f["id"], f["status"], f["kind"] or "", f["reason"] or "", f["retry"], f["charged_retries"])
            for f in failed[:FAILED_SHOWN]
        ]
        click.echo("\nfailed items:\n" + table(("id", "status", "kind", "reason", "retry", "charged"), rows))
        if len(failed) > FAILED_SHOWN:
            click.echo(f"… and {len(failed) - FAILED_SHOWN} more (--json lists all)")
    if info["counts"].get("missing"):
        click.echo(
            f"\n{info['counts']['missing']} item(s) missing (submit interrupted, or expired): "
            "resubmit the run file to create them"
        )


@runs.command(
    "retry-failed",
    help="Retry a stopped run's failed items with a fresh budget, all or nothing, in one transaction.\n\n"
    "Crashes (our fault) are retried free; PERMANENT failures (validation, auth) never; any other "
    "retry is charged, and if one item would pass --max-retries charged retries, nothing is "
    "retried and the items are named (exit 4). Exit 4 while the run is running, 1 when nothing "
    "is left to retry.\n\n\b\nExamples:\n  genqueue runs retry-failed batch-42\n"
    "  genqueue runs retry-failed batch-42 --max-retries 5 --json",
)
@click.argument("run_id")
@click.option(
    "--max-retries",
    "limit",
    type=click.IntRange(1, 10),
    default=None,
    help="Charged manual retries allowed per item (1-10; default: the run's max_retry_count, 3).",
)
@json_option
def retry_failed(run_id, limit, as_json) -> None:
    from ..backend import audit
    from ..runs.rules import check_run_id
    from ..runs.store import retry_failed as do_retry

    check_run_id(run_id)
    app = get_app(None, as_json)
    result = do_retry(app.connection, run_id, ttl_s=app.settings.dlq_retention_s, limit=limit)
    retried = sorted(result.free + result.charged)
    audit.record(
        app.connection,
        "run_retry_failed",
        result.queue,
        ids=retried,
        note=f"run {run_id}",
        counts={"free": len(result.free), "charged": len(result.charged), "never": len(result.never)},
    )
    if as_json:
        emit_json(
            {
                "run_id": run_id,
                "queue": result.queue,
                "run_retry": result.run_retry,
                "retried": retried,
                "free": result.free,
                "charged": result.charged,
                "never_retried": result.never,
                "credits_debited": result.credits_debited,
            }
        )
        return
    click.echo(
        f"retried {len(retried)} item(s) of run {run_id} (retry #{result.run_retry}): "
        f"{len(result.charged)} charged, {len(result.free)} free (crashes)"
        + (f"; {result.credits_debited} credit(s) debited" if result.credits_debited else "")
    )
    free = set(result.free)  # membership per retried item: a list made this quadratic for big runs
    for job_id in retried:
        click.echo(f"  {job_id}  {'free' if job_id in free else 'charged'}")
    if result.never:
        click.echo(f"not retried (failed permanently): {short(', '.join(result.never), 200)}")


@runs.command(
    help="Cancel every item of a run not yet finished (each as `genqueue jobs cancel` does): the counts say "
    "how many were canceled at once, how many were running (their workers stop them), and how many had "
    "already finished. Running it again cancels what is left.\n\n\b\nExamples:\n"
    '  genqueue runs cancel batch-42\n  genqueue runs cancel batch-42 --reason "wrong prompt file" --json',
)
@click.argument("run_id")
@click.option("--reason", default=None, metavar="TEXT", help="Why, kept in each item's history.")
@json_option
def cancel(run_id, reason, as_json) -> None:
    from ..backend import audit
    from ..runs.cancel import cancel_run
    from ..runs.rules import check_run_id

    check_run_id(run_id)
    app = get_app(None, as_json)
    result = cancel_run(app.connection, run_id, ttl_s=app.settings.dlq_retention_s, by=audit.who(), reason=reason)
    audit.record(app.connection, "run_cancel", result.queue, note=f"run {run_id}", counts=result.counts)
    if as_json:
        emit_json(result.as_dict())
        return
    c = result.counts
    click.echo(
        f"run {run_id}: {c['canceled']} canceled, {c['stopping']} running (being stopped), "
        f"{c['already']} already canceled, {c['finished']} already finished"
        + (f", {c['missing']} missing" if c["missing"] else "")
    )
