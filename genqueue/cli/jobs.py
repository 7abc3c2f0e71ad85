"""genqueue enqueue / genqueue jobs show / genqueue jobs retry."""

from __future__ import annotations

import json

import click

from ..errors import InvalidInput
from ..tenants.fairness import PRIORITIES
from .app import get_app
from .params import json_option, parse_duration, parse_json_arg, queue_option
from .render import emit_json, short, table


@click.command(
    help="Enqueue one job: of TASK with --kwargs, or of the built-in generate task with --payload.\n\n\b\n"
    "Examples:\n"
    '  genqueue enqueue --payload \'{"prompt": "a red fox", "user_id": "u1"}\'\n'
    "  genqueue enqueue --payload @job.json --job-id fox-1 --max-retries 2 --in 30s --priority high\n"
    '  genqueue enqueue myapp.tasks.make_image --kwargs \'{"prompt": "a fox"}\' --tasks myapp.tasks'
)
@click.argument("task_name", metavar="[TASK]", required=False)
@click.option("--payload", default=None, help="The generate task's payload as JSON, or @FILE (@- for stdin).")
@click.option(
    "--kwargs",
    "kwargs_arg",
    default=None,
    metavar="JSON",
    help="TASK's keyword arguments as a JSON object, or @FILE (default {}).",
)
@click.option(
    "--tasks",
    "task_modules",
    default=None,
    metavar="MODULE[,MODULE]",
    help="Import these task modules (default $GENQUEUE_TASKS) so --kwargs is checked against TASK's "
    "signature before anything is enqueued.",
)
@click.option("--job-id", default=None, help="Explicit id: enqueueing it again while it is live returns the same job.")
@click.option(
    "--resend",
    is_flag=True,
    help="With --job-id: this is the same enqueue sent again (after exit 5): a job holding the id in any state, "
    "finished included, is returned, never run again.",
)
@click.option("--max-retries", type=click.IntRange(min=0), default=None, help="Override the kinds' retry maximum.")
@click.option("--in", "in_", default=None, metavar="DURATION", help="Run later, e.g. 30s, 5m, 2h.")
@click.option("--timeout", type=click.IntRange(min=1), default=None, help="Job timeout in seconds (default 180).")
@click.option(
    "--policy",
    default=None,
    metavar="JSON",
    help='Per-kind policy override for this job, e.g. \'{"TRANSIENT": {"max": 2, "base": 1}}\'.',
)
@click.option(
    "--no-check",
    "no_check",
    is_flag=True,
    help="Enqueue TASK even when neither this process nor a live worker knows it (workers that start later).",
)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES, case_sensitive=False),
    default=None,
    help="Its place among the queue's jobs: high, normal or low (default: the task's, else normal).",
)
@click.option(
    "--webhook",
    default=None,
    metavar="URL",
    help="Call this URL back, signed (Standard Webhooks), on the job's events: https, a public host, or one "
    "listed in GENQUEUE_WEBHOOK_ALLOW (default: the task's declared webhook).",
)
@click.option(
    "--webhook-event",
    "webhook_events",
    multiple=True,
    metavar="EVENT",
    help="An event to send (repeatable; default: finished, dead_lettered, canceled).",
)
@queue_option
@json_option
def enqueue(
    task_name,
    payload,
    kwargs_arg,
    task_modules,
    job_id,
    resend,
    max_retries,
    in_,
    timeout,
    policy,
    no_check,
    priority,
    webhook,
    webhook_events,
    queue,
    as_json,
) -> None:
    from ..errors import InvalidInput
    from ..jobs.enqueue import (
        catalogue_for,
        check_not_run_item,
        check_policy,
        declared_webhook,
        enqueue_call,
        generate_call,
        task_call,
    )
    from ..jobs.manual_retry import checked_job_id

    if task_name is not None and payload is not None:
        raise InvalidInput("give TASK (with --kwargs) or --payload (the built-in generate task), not both")
    if task_name is None and payload is None:
        raise InvalidInput("--kwargs needs a TASK name" if kwargs_arg else "give TASK --kwargs JSON, or --payload JSON")
    policy_data = parse_json_arg(policy, "--policy") if policy else None
    if policy_data is not None:
        check_policy(policy_data)
    delay = parse_duration(in_) if in_ else None
    if job_id is not None:
        check_not_run_item(checked_job_id(job_id))
    elif resend:
        raise InvalidInput("--resend needs --job-id (the id of the enqueue sent again)")
    app = get_app(queue, as_json)
    spec = None
    if task_name is None:
        call = generate_call(parse_json_arg(payload, "--payload"))
    else:
        from ..tasks.registry import import_task_modules

        import_task_modules(task_modules.split(",") if task_modules is not None else app.settings.tasks)
        kwargs = parse_json_arg(kwargs_arg, "--kwargs") if kwargs_arg else {}
        if not no_check:
            import_owner(task_name)
        catalogue = catalogue_for(app.connection, task_name, not no_check)  # the live workers' tasks
        call, spec = task_call(task_name, kwargs, catalogue)
    target = queue or (spec.queue if spec is not None else None) or app.settings.queue
    if spec is not None and not spec.positional:
        max_retries = spec.max_retries if max_retries is None else max_retries
        timeout = timeout or spec.timeout
        policy_data = policy_data or (dict(spec.policy) if spec.policy else None)
        priority = priority or spec.priority
    result = enqueue_call(
        app.for_queue(target).connection,
        target,
        call,
        job_id=job_id,
        max_retries=max_retries,
        in_=delay,
        timeout=timeout,
        policy=policy_data,
        priority=priority,
        resend=resend,
        **declared_webhook(spec, webhook, list(webhook_events) or None),
    )
    status = result.job.get_status(refresh=False)
    if as_json:
        emit_json(
            {
                "id": result.job.id,
                "queue": target,
                "task": call.func,
                "created": result.created,
                "status": str(status.value if hasattr(status, "value") else status),
            }
        )
    elif result.created:
        click.echo(f"enqueued {result.job.id} ({call.func}) on {target}")
    else:
        click.echo(
            f"already {status.value if hasattr(status, 'value') else status}: {result.job.id} (not enqueued again)"
        )


def import_owner(task_name: str) -> None:
    """Import the module a dotted task name lives in, when it can be imported here, so the name and its
    kwargs are checked against the task itself; nothing is said when it cannot be (the catalogue decides)."""
    import importlib

    module = task_name.rpartition(".")[0]
    if not module:
        return
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - not importable here: the live workers' catalogue is asked instead
        return


@click.group(help="Inspect jobs, retry failed ones, cancel them.")
def jobs() -> None:
    pass


@jobs.command(help="A job's status and every failed attempt's decision.\n\n\b\nExample:\n  genqueue jobs show fox-1")
@click.argument("job_id")
@queue_option
@json_option
def show(job_id, queue, as_json) -> None:
    from ..jobs.manual_retry import checked_job_id
    from ..jobs.status import job_status

    checked_job_id(job_id)
    app = get_app(queue, as_json)
    info = job_status(app.connection, app.store(), job_id)
    if as_json:
        emit_json(info)
        return
    for key in (
        "id",
        "queue",
        "type",
        "status",
        "attempts",
        "max_attempts",
        "last_error",
        "created_at",
        "scheduled_at",
        "started_at",
        "completed_at",
        "replays",
    ):
        if info.get(key) is not None:
            click.echo(f"{key + ':':<14}{info[key]}")
    progress = info.get("progress")
    if progress:
        click.echo(f"{'progress:':<14}{progress_line(progress)}")
    hook = info.get("webhook")
    if hook:
        click.echo(f"{'webhook:':<14}{hook['url']} ({', '.join(hook['events'])})")
    click.echo(f"{'payload:':<14}{short(json.dumps(info.get('payload'), sort_keys=True), 200)}")
    history = info.get("history") or []
    if history:
        click.echo("\n" + history_table(history))


@jobs.command(
    help="Put a failed or dead job back on its queue with a fresh retry budget.\n\n"
    "Refused (exit 4) while the job is queued, scheduled or running, once it has finished, and "
    "when its attempts reached max_attempts (unless --force). A dead job's DLQ entry is removed "
    "in the same transaction that enqueues it; the retry is recorded in the job's history."
    "\n\n\b\nExamples:\n  genqueue jobs retry fox-1\n  genqueue jobs retry fox-1 --force --json"
)
@click.argument("job_id")
@click.option("--force", is_flag=True, help="Retry even when the job's attempts reached max_attempts.")
@queue_option
@json_option
def retry(job_id, force, queue, as_json) -> None:
    from ..backend import audit
    from ..jobs.manual_retry import checked_job_id, retry_job

    checked_job_id(job_id)
    app = get_app(queue, as_json)
    outcome = retry_job(app.connection, app.store(), job_id, force=force)
    audit.record(
        app.connection,
        "job_retry",
        outcome.queue,
        ids=[job_id],
        note=f"was {outcome.previous_status}" + (", forced" if force else ""),
    )
    if as_json:
        emit_json(
            {
                "id": job_id,
                "queue": outcome.queue,
                "status": "queued",
                "previous_status": outcome.previous_status,
                "attempts": outcome.attempts,
                "max_attempts": outcome.max_attempts,
                "charged": outcome.charged,
                "forced": outcome.forced,
            }
        )
        return
    click.echo(
        f"retried {job_id}: queued on {outcome.queue} with a fresh budget (was {outcome.previous_status}, "
        f"{outcome.attempts} of {outcome.max_attempts} attempts made{', forced' if force else ''})"
    )


@jobs.command(
    help="Cancel a job, or (admins) every live job matching filters. Queued, scheduled or parked: canceled at "
    "once, out of every list. Running: its worker stops it (the task sees genqueue.current().cancelled; after "
    "GENQUEUE_CANCEL_GRACE seconds a forking worker kills it, a concurrent one interrupts it; --simple workers can "
    "only wait for the task) and it ends canceled, never retried or dead-lettered. Cancelling again is harmless; "
    "exit 4 when the job had already finished (finished or dead-lettered).\n\n"
    "With --task, --tenant and/or --limit-key instead of JOB_ID: every matching job of the queue, each by the same "
    "move; --dry-run counts them; a run interrupted (Ctrl-C) resumes with --cursor, or by running it again.\n\n\b\n"
    "Examples:\n  genqueue jobs cancel fox-1\n"
    '  genqueue jobs cancel fox-1 --reason "wrong prompt file" --json\n'
    "  genqueue jobs cancel --tenant acme --dry-run\n"
    "  genqueue jobs cancel --tenant acme --task myapp.tasks.make_image --yes"
)
@click.argument("job_id", required=False)
@click.option("--reason", default=None, metavar="TEXT", help="Why, kept in the job's history.")
@click.option("--task", "task_name", default=None, help="Filter: jobs of this task (its registered name).")
@click.option("--tenant", default=None, help="Filter: jobs of this tenant.")
@click.option("--limit-key", default=None, help="Filter: jobs under this limit key (e.g. openai:gpt-image-1).")
@click.option("--dry-run", is_flag=True, help="Filters: count the matching jobs by place; change nothing.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="Filters: at most N jobs per second.")
@click.option("--cursor", default=None, help="Filters: resume an interrupted run after this cursor.")
@click.option("--yes", "-y", is_flag=True, help="Filters: do not ask for confirmation.")
@queue_option
@json_option
def cancel(job_id, reason, task_name, tenant, limit_key, dry_run, rate, cursor, yes, queue, as_json) -> None:
    from ..backend import audit
    from ..jobs.cancel import cancel_job
    from ..jobs.manual_retry import checked_job_id

    filtered = bool(task_name or tenant or limit_key)
    if job_id is not None and filtered:
        raise InvalidInput("give a JOB_ID or filters (--task, --tenant, --limit-key), not both")
    if job_id is None:
        if not filtered:
            raise InvalidInput("give a JOB_ID, or filters: --task, --tenant and/or --limit-key")
        cancel_by_filter(queue, as_json, task_name, tenant, limit_key, reason, dry_run, rate, cursor, yes)
        return
    if dry_run or rate or cursor:
        raise InvalidInput("--dry-run, --rate and --cursor go with filters, not with a JOB_ID")
    checked_job_id(job_id)
    app = get_app(queue, as_json)
    outcome = cancel_job(app.connection, app.store(), job_id, by=audit.who(), reason=reason)
    if not outcome.already:
        audit.record(
            app.connection,
            "job_cancel",
            outcome.queue,
            ids=[job_id],
            note=f"was {outcome.previous_status}" + (f": {reason}" if reason else ""),
        )
    if as_json:
        emit_json(outcome.as_dict())
        return
    if outcome.already:
        click.echo(f"{job_id} was already canceled")
    elif outcome.stopping:
        click.echo(f"canceled {job_id}: it was running; its worker stops it (it can no longer finish otherwise)")
    else:
        click.echo(f"canceled {job_id} (was {outcome.previous_status})")


def cancel_by_filter(queue, as_json, task_name, tenant, limit_key, reason, dry_run, rate, cursor, yes) -> None:
    """Dry run (counts by place), confirmation, progress, Ctrl-C with a resume cursor, audit: as `dlq retry
    --all` (cli/dlq_shared.run_bulk)."""
    import sys

    from ..backend import audit
    from ..jobs.bulk_cancel import BulkCancelResult, CancelFilter, bulk_cancel, count_matching
    from .dlq_shared import confirm_destructive

    app = get_app(queue, as_json)
    f = CancelFilter(app.settings.queue, task_name, tenant, limit_key).check()
    counts = count_matching(app.connection, f, cursor)
    total = sum(counts.values())
    if dry_run:
        report = {"dry_run": True, "queue": f.queue, "filters": f.as_dict(), "matching": total, "by_place": counts}
        if as_json:
            emit_json(report)
        else:
            places = ", ".join(f"{p} {n}" for p, n in counts.items() if n) or "none"
            click.echo(f"dry run: would cancel {total} job{'' if total == 1 else 's'} ({places}); nothing changed")
        return
    if total == 0:
        raise click.ClickException(f"no live job of {f.queue} matches; nothing to cancel")
    confirm_destructive(f"Cancel {total} job{'' if total == 1 else 's'} of {f.queue}?", yes)
    result = BulkCancelResult()
    try:
        with click.progressbar(length=total, label="canceling", file=sys.stderr, show_pos=True) as bar:
            bulk_cancel(
                app.connection,
                app.store(),
                f,
                cursor=cursor,
                by=audit.who(),
                reason=reason,
                rate=rate,
                progress=bar.update,
                result=result,
            )
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted; jobs already canceled stay canceled. Resume with the same command and "
            f"--cursor {result.cursor}"
            if result.cursor
            else "\ninterrupted before the first job; run it again",
            err=True,
        )
        raise
    finally:
        audit.record(app.connection, "bulk_cancel", f.queue, filters=f.as_dict(), counts=result.counts, ids=result.ids)
    if as_json:
        emit_json({"queue": f.queue, "filters": f.as_dict(), **result.counts, "cursor": result.cursor})
        return
    c = result.counts
    click.echo(
        f"canceled {c['canceled']} at once, {c['stopping']} running (their workers stop them); "
        f"{c['already']} already canceled, {c['finished']} finished first"
    )


WATCH_EXIT = {"finished": 0, "dead_lettered": 1, "canceled": 7}  # and 124: --timeout passed
WATCH_TIMEOUT_EXIT = 124


@jobs.command(
    help="Print a job's events as they happen (enqueued, started, progress, retry_scheduled, parked, woken, "
    "finished, dead_lettered, canceled, replayed), from its first, and exit with its outcome: 0 finished, "
    "1 dead-lettered, 7 canceled, 124 when --timeout passed first. A job that has already ended prints its "
    "events and exits at once.\n\n\b\nExamples:\n  genqueue jobs watch fox-1\n"
    "  genqueue jobs watch fox-1 --json --timeout 300"
)
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="Give up after SECONDS.")
@queue_option
@json_option
def watch(job_id, timeout, queue, as_json) -> None:
    import time

    from ..jobs.events import read, read_many
    from ..jobs.manual_retry import checked_job_id
    from ..jobs.status import job_status

    checked_job_id(job_id)
    app = get_app(queue, as_json)
    info = job_status(app.connection, app.store(), job_id)  # NotFound (exit 3) for an unknown id
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor, last = "0-0", None
    backlog = True
    while True:
        if backlog:
            events, backlog = read(app.connection, job_id, cursor), False
        else:
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                click.echo(f"{job_id}: still {job_status(app.connection, app.store(), job_id)['status']}", err=True)
                raise SystemExit(WATCH_TIMEOUT_EXIT)
            events = read_many(app.connection, {job_id: cursor}, block_ms=int(min(left, 5.0) * 1000))
        for event in events:
            click.echo(json.dumps(event.as_dict()) if as_json else event_line(event))
            cursor, last = event.id, event
        if last is not None and last.terminal and not read(app.connection, job_id, cursor, count=1):
            raise SystemExit(WATCH_EXIT[last.event])
        if last is None and info["status"] in ("finished", "dead", "canceled"):  # ended, no events kept
            raise SystemExit({"finished": 0, "dead": 1, "canceled": 7}[info["status"]])


def event_line(event) -> str:
    data = event.as_dict()["data"]
    return f"{event.at}  {event.event:<16}{short(json.dumps(data, sort_keys=True), 160) if data else ''}"


def progress_line(progress: dict) -> str:
    """`42% step 24/60 (at …)`, and the data as short JSON."""
    parts = []
    if progress.get("fraction") is not None:
        parts.append(f"{progress['fraction'] * 100:.0f}%")
    if progress.get("message"):
        parts.append(short(progress["message"], 80))
    if progress.get("data") is not None:
        parts.append(short(json.dumps(progress["data"], sort_keys=True), 120))
    return " ".join(parts) + f" (at {progress.get('at')})"


def history_table(history: list[dict]) -> str:
    rows = [
        _manual_row(h)
        if h.get("action") in ("manual_retry", "canceled")
        else (
            h.get("n"),
            h.get("kind"),
            (h.get("error") or {}).get("status_code") or "",
            h.get("action"),
            "" if h.get("delay") is None else f"{h['delay']:.2f}s",
            h.get("retry_after") or "",
            "yes" if h.get("clipped") else "",
            short(h.get("worker"), 24),
            short((h.get("error") or {}).get("message"), 48),
        )
        for h in history
    ]
    return table(("#", "kind", "status", "action", "delay", "retry_after", "clipped", "worker", "error"), rows)


def _manual_row(h: dict) -> tuple:
    """A manual retry or a cancel is not an attempt: the row says who did it, when (and how, or why)."""
    if h.get("action") == "canceled":
        return (
            "",
            "",
            "",
            "canceled",
            "",
            "",
            "",
            short(h.get("by"), 24),
            short(f"{h.get('reason') or ''} at {h.get('at')}", 48),
        )
    note = f"{h.get('via', 'manual')}, {'charged' if h.get('charged') else 'free'}"
    note += ", forced" if h.get("forced") else ""
    return ("", "", "", "manual_retry", "", "", "", short(h.get("by"), 24), short(f"{note} at {h.get('at')}", 48))


@click.command(
    "tasks",
    help="The tasks the live workers run (what they published when they started), with their options; "
    "with --tasks, the tasks registered in this process instead: the built-in generate and those of the "
    "modules.\n\n\b\nExamples:\n  genqueue tasks\n  genqueue tasks --tasks myapp.tasks",
)
@click.option(
    "--tasks",
    "task_modules",
    default=None,
    metavar="MODULE[,MODULE]",
    help="Import these modules and list what they register, instead of asking the live workers.",
)
@click.option("--path", "paths", multiple=True, type=click.Path(file_okay=False), help="A directory to import from.")
@json_option
def tasks(task_modules, paths, as_json) -> None:
    from ..tasks.catalogue import read
    from ..tasks.registry import import_task_modules, registered

    app = get_app(None, as_json)
    if task_modules is not None:
        import_task_modules(task_modules.split(","), paths)
        rows = [{"name": s.name, **s.options()} for s in registered()]
    else:
        rows = [{"name": t.name, **t.options} for t in sorted(read(app.connection).values(), key=lambda t: t.name)]
    if as_json:
        emit_json({"tasks": rows})
        return
    click.echo(
        table(
            ["name", "queue", "max_retries", "timeout", "result_ttl", "api", "async", "policy"],
            [
                [
                    r["name"],
                    r.get("queue") or "-",
                    "-" if r.get("max_retries") is None else r.get("max_retries"),
                    r.get("timeout") or "-",
                    r.get("result_ttl") or "-",
                    "yes" if r.get("api") else "no",
                    "yes" if r.get("async") else "no",
                    json.dumps(r.get("policy")) if r.get("policy") else "-",
                ]
                for r in rows
            ],
        )
    )
