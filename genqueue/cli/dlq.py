"""genqueue dlq — inspect and act on the dead-letter queue."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import click

from ..errors import GenqueueError, InvalidInput
from .app import get_app
from .params import json_option, parse_duration, queue_option
from .render import emit_json, short, table


def _time_bound(text: str | None, name: str) -> float | None:
    """`2h` (that long ago) or an ISO timestamp → epoch seconds."""
    if not text:
        return None
    try:
        return time.time() - parse_duration(text).total_seconds()
    except InvalidInput:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be a duration like 2h or an ISO timestamp, not {text!r}") from None
    return when.timestamp()


def filter_options(fn):
    for option in reversed(
        [
            click.option("--kind", default=None, help="Error kind, e.g. RATE_LIMITED."),
            click.option("--func", default=None, help="Job function, e.g. genqueue.jobs.generate."),
            click.option("--user", default=None, help="payload.user_id."),
            click.option("--reason", type=click.Choice(["exhausted", "non_retryable", "crash_loop", "manual"]),
                         default=None, help="Why it was dead-lettered."),
            click.option("--fingerprint", default=None, help="Error fingerprint (groups similar errors)."),
            click.option("--since", default=None, help="Dead-lettered after: 2h ago, or an ISO timestamp."),
            click.option("--until", default=None, help="Dead-lettered before: 30m ago, or an ISO timestamp."),
        ]
    ):
        fn = option(fn)
    return fn


def build_filters(kind, func, user, reason, fingerprint, since, until):
    from ..dlq.store import Filters

    return Filters(kind=kind.upper() if kind else None, func=func, user=user, reason=reason,
                   fingerprint=fingerprint, since=_time_bound(since, "--since"), until=_time_bound(until, "--until"))


@click.group(help="The dead-letter queue: list, show, retry, delete.")
def dlq() -> None:
    pass


@dlq.command("list", help="Dead-lettered jobs, newest first.\n\n\b\nExamples:\n  genqueue dlq list\n"
                          "  genqueue dlq list --kind PERMANENT --since 2h --json")
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page's next_cursor.")
@queue_option
@json_option
def list_(kind, func, user, reason, fingerprint, since, until, limit, cursor, queue, as_json) -> None:
    from ..secrets import mask

    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    app = get_app(queue, as_json)
    page = app.store().page(filters, cursor=cursor, limit=limit)
    for job_id in page.skipped:
        click.echo(f"warning: skipped corrupt DLQ entry {job_id}", err=True)
    if as_json:
        emit_json({"queue": app.settings.queue, "total": page.total, "entries": [mask(e) for e in page.entries],
                   "next_cursor": page.next_cursor})
        return
    if not page.entries:
        click.echo(f"{app.store().keys.dlq_name} is empty" + (" for these filters" if filters.indexed() else ""))
        return
    rows = [(e["job_id"], e["failed_at"], e["error"].get("kind"), e["reason"], len(e.get("history", [])),
             e["error"].get("status_code") or "", e.get("user_id") or "", short(e["error"].get("message"), 50))
            for e in page.entries]
    click.echo(table(("job_id", "failed_at", "kind", "reason", "attempts", "status", "user", "error"), rows))
    click.echo(f"\n{len(page.entries)} shown of {page.total}" +
               (f"; more: --cursor {page.next_cursor}" if page.next_cursor else ""))


@dlq.command(help="One entry in full: payload, every attempt, tracebacks.\n\n\b\nExample:\n  genqueue dlq show demo-1a2b-17")
@click.argument("job_id")
@queue_option
@json_option
def show(job_id, queue, as_json) -> None:
    from ..secrets import mask
    from .jobs import history_table

    app = get_app(queue, as_json)
    entry = mask(app.store().get(job_id))
    if as_json:
        emit_json(entry)
        return
    err = entry["error"]
    for key in ("job_id", "queue", "func", "reason", "user_id", "provider_job_id", "retry_count", "crash_count",
                "enqueued_at", "failed_at", "expires_at", "replays", "replayed_from", "fingerprint"):
        if entry.get(key) is not None:
            click.echo(f"{key + ':':<17}{entry[key]}")
    click.echo(f"{'error:':<17}{err.get('kind')} {err.get('type')}: {err.get('message')}")
    payload = entry["args"][0] if entry.get("args") else None
    click.echo(f"{'payload:':<17}{json.dumps(payload, sort_keys=True)}")
    click.echo("\n" + history_table(entry.get("history", [])))
    for h in entry.get("history", []):
        tb = (h.get("error") or {}).get("traceback")
        if tb:
            click.echo(f"\n--- attempt {h.get('n')} traceback ---\n{tb.rstrip()}")


@dlq.command(help="Put entries back on the queue with a fresh retry budget (the entry is removed).\n\n\b\n"
                  "Examples:\n  genqueue dlq retry demo-1a2b-17\n  genqueue dlq retry ID1 ID2 --json")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Replay even past the replay cap (3).")
@queue_option
@json_option
def retry(job_ids, force, queue, as_json) -> None:
    from ..dlq.replay import replay

    app = get_app(queue, as_json)
    store = app.store()
    results, worst = [], None
    for job_id in job_ids:
        try:
            job = replay(store, job_id, force=force)
            results.append({"id": job_id, "replayed": True, "status": "queued", "replays": job.meta["genqueue"]["replays"]})
            if not as_json:
                click.echo(f"replayed {job_id}: queued on {app.settings.queue}")
        except GenqueueError as exc:
            if len(job_ids) == 1:
                raise
            worst = worst or exc
            results.append({"id": job_id, "replayed": False, "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
    if as_json:
        emit_json({"queue": app.settings.queue, "results": results})
    if worst is not None:
        sys.exit(worst.exit_code)


@dlq.command(help="Delete entries for good.\n\n\b\nExample:\n  genqueue dlq delete demo-1a2b-17 --yes")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@queue_option
@json_option
def delete(job_ids, yes, queue, as_json) -> None:
    confirm_destructive(f"Delete {len(job_ids)} DLQ entr{'y' if len(job_ids) == 1 else 'ies'}?", yes)
    app = get_app(queue, as_json)
    store = app.store()
    results, worst = [], None
    for job_id in job_ids:
        try:
            store.delete(job_id)
            results.append({"id": job_id, "deleted": True})
            if not as_json:
                click.echo(f"deleted {job_id}")
        except GenqueueError as exc:
            if len(job_ids) == 1:
                raise
            worst = worst or exc
            results.append({"id": job_id, "deleted": False, "error": str(exc)})
            click.echo(f"error: {exc}", err=True)
    if as_json:
        emit_json({"queue": app.settings.queue, "results": results})
    if worst is not None:
        sys.exit(worst.exit_code)


def confirm_destructive(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput("refusing a destructive action without --yes when stdin is not a terminal")
    click.confirm(question, abort=True)
