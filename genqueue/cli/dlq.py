"""genqueue dlq — inspect and act on the dead-letter queue."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import CorruptEntry, GenqueueError, InvalidInput
from .app import get_app
from .dlq_shared import build_filters, bulk_options, confirm_destructive, dlq, filter_options, run_bulk
from .params import json_option, parse_json_arg, queue_option
from .render import emit_json, short, table


@dlq.command(
    "list",
    help="Dead-lettered jobs, newest first.\n\n\b\nExamples:\n  genqueue dlq list\n"
    "  genqueue dlq list --kind PERMANENT --since 2h --json",
)
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page's next_cursor.")
@queue_option
@json_option
def list_(kind, func, user, reason, fingerprint, since, until, limit, cursor, queue, as_json) -> None:
    from ..dlq.entry import shown_in_list

    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    app = get_app(queue, as_json)
    page = app.store().page(filters, cursor=cursor, limit=limit)
    for job_id in page.skipped:
        click.echo(f"warning: skipped corrupt DLQ entry {job_id}", err=True)
    if as_json:
        emit_json(
            {
                "queue": app.settings.queue,
                "total": page.total,
                "entries": [shown_in_list(e) for e in page.entries],
                "next_cursor": page.next_cursor,
            }
        )
        return
    if not page.entries:
        click.echo(f"{app.store().keys.dlq_name} is empty" + (" for these filters" if filters.indexed() else ""))
        return
    from ..retry.meta import failures  # attempts, not manual-retry records

    rows = [
        (
            e["job_id"],
            e["failed_at"],
            e["error"].get("kind"),
            e["reason"],
            len(failures(e.get("history") or [])),
            e["error"].get("status_code") or "",
            e.get("user_id") or "",
            short(e["error"].get("message"), 50),
        )
        for e in page.entries
    ]
    click.echo(table(("job_id", "failed_at", "kind", "reason", "attempts", "status", "user", "error"), rows))
    click.echo(
        f"\n{len(page.entries)} shown of {page.total}"
        + (f"; more: --cursor {page.next_cursor}" if page.next_cursor else "")
    )


@dlq.command(
    help="One entry in full: payload, every attempt, tracebacks.\n\n\b\nExample:\n  genqueue dlq show demo-1a2b-17"
)
@click.argument("job_id")
@queue_option
@json_option
def show(job_id, queue, as_json) -> None:
    from ..jobs.status import UNREADABLE
    from ..support.secrets import mask

    app = get_app(queue, as_json)
    entry = app.store().get(job_id)
    try:
        entry = mask(entry)
        if as_json:
            emit_json(entry)
            return
        _show_entry(entry)
    except UNREADABLE as exc:
        raise CorruptEntry(
            f"DLQ entry {job_id} cannot be shown ({type(exc).__name__}): its fields are corrupt"
        ) from None


def _show_entry(entry: dict) -> None:
    from ..dlq.entry import payload_of
    from .jobs import history_table

    err = entry["error"]
    for key in (
        "job_id",
        "queue",
        "func",
        "reason",
        "user_id",
        "provider_job_id",
        "retry_count",
        "crash_count",
        "enqueued_at",
        "failed_at",
        "expires_at",
        "replays",
        "replayed_from",
        "fingerprint",
    ):
        if entry.get(key) is not None:
            click.echo(f"{key + ':':<17}{entry[key]}")
    click.echo(f"{'error:':<17}{err.get('kind')} {err.get('type')}: {err.get('message')}")
    payload = payload_of(entry)
    click.echo(f"{'payload:':<17}{json.dumps(payload, sort_keys=True)}")
    click.echo("\n" + history_table(entry.get("history", [])))
    for h in entry.get("history", []):
        tb = (h.get("error") or {}).get("traceback")
        if tb:
            click.echo(f"\n--- attempt {h.get('n')} traceback ---\n{tb.rstrip()}")


@dlq.command(
    help="Put entries back on the queue with a fresh retry budget (each entry is removed).\n\n\b\n"
    "Examples:\n  genqueue dlq retry demo-1a2b-17\n"
    '  genqueue dlq retry demo-1a2b-17 --payload-patch \'{"params": {"steps": 20}}\'\n'
    "  genqueue dlq retry --all --kind RATE_LIMITED --since 2h --dry-run\n"
    "  genqueue dlq retry --all --kind RATE_LIMITED --rate 50 --yes"
)
@click.argument("job_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Replay every entry matching the filters.")
@filter_options
@click.option("--force", is_flag=True, help="Replay even past the replay cap (3).")
@click.option(
    "--payload-patch",
    default=None,
    metavar="JSON",
    help="JSON merge patch applied to the payload of the replayed job(s); shows the diff first.",
)
@bulk_options
@queue_option
@json_option
def retry(
    job_ids,
    all_,
    kind,
    func,
    user,
    reason,
    fingerprint,
    since,
    until,
    force,
    payload_patch,
    dry_run,
    rate,
    cursor,
    yes,
    queue,
    as_json,
) -> None:
    from ..backend import audit

    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    patch = _retry_patch(job_ids, all_, filters, rate, cursor, payload_patch)
    app = get_app(queue, as_json)
    store = app.store()
    if all_:
        run_bulk(app, store, "retry", filters, dry_run=dry_run, rate=rate, cursor=cursor, yes=yes, force=force)
        return
    if patch is not None:
        _show_patch(store, job_ids, patch, dry_run=dry_run, yes=yes)
    if dry_run:
        for job_id in job_ids:
            store.get(job_id)  # not found → exit 3, like the real thing
        click.echo(f"dry run: would replay {len(job_ids)} entr{'y' if len(job_ids) == 1 else 'ies'}; nothing changed")
        return
    results, worst = _replay_each(app, store, job_ids, patch, force=force, as_json=as_json)
    done = [r["id"] for r in results if r["replayed"]]
    if done:
        audit.record(
            app.connection,
            "retry",
            app.settings.queue,
            counts={"replayed": len(done)},
            ids=done,
            note="payload patched" if patch else None,
        )
    if worst is not None and len(job_ids) == 1:
        raise worst
    if as_json:
        emit_json({"queue": app.settings.queue, "results": results})
    if worst is not None:
        sys.exit(worst.exit_code)


def _retry_patch(job_ids, all_, filters, rate, cursor, payload_patch) -> dict[str, Any] | None:
    """Check how `dlq retry`'s arguments go together; the parsed --payload-patch (None: none given)."""
    if all_ == bool(job_ids):
        raise InvalidInput("give entry ids, or --all with filters (not both)")
    if not all_ and (filters.indexed() or filters.since or filters.until or rate or cursor):
        raise InvalidInput("filters, --rate and --cursor go with --all")
    patch = parse_json_arg(payload_patch, "--payload-patch") if payload_patch else None
    if patch is not None and not isinstance(patch, dict):
        raise InvalidInput("--payload-patch must be a JSON object (a merge patch)")
    if all_ and patch is not None:
        raise InvalidInput("--payload-patch goes with explicit ids, not --all")
    return patch


def _replay_each(
    app, store, job_ids, patch, *, force: bool, as_json: bool
) -> tuple[list[dict[str, Any]], GenqueueError | None]:
    """Replay the given entries one by one: a result per id, and the first error (None: all replayed)."""
    from ..dlq.replay import replay

    results: list[dict[str, Any]] = []
    worst: GenqueueError | None = None
    for job_id in job_ids:
        try:
            job = replay(store, job_id, force=force, payload_patch=patch)
            results.append(
                {"id": job_id, "replayed": True, "status": "queued", "replays": job.meta["genqueue"]["replays"]}
            )
            if not as_json:
                click.echo(f"replayed {job_id}: queued on {app.settings.queue}")
        except GenqueueError as exc:
            worst = worst or exc
            results.append({"id": job_id, "replayed": False, "error": str(exc)})
            if len(job_ids) > 1:
                click.echo(f"error: {exc}", err=True)
    return results, worst


def _show_patch(store, job_ids, patch, *, dry_run: bool, yes: bool) -> None:
    import difflib

    from ..dlq.entry import payload_of
    from ..dlq.replay import patched
    from ..support.secrets import mask

    for job_id in job_ids:
        entry = store.get(job_id)
        before = json.dumps(mask(payload_of(entry)), indent=2, sort_keys=True).splitlines()
        after = json.dumps(mask(payload_of(patched(entry, patch))), indent=2, sort_keys=True).splitlines()
        click.echo(f"payload of {job_id}:")
        click.echo("\n".join(difflib.unified_diff(before, after, "before", "after", lineterm="", n=2)) or "(no change)")
    if not dry_run:
        confirm_destructive(f"Replay {len(job_ids)} job(s) with the patched payload?", yes)


@dlq.command(help="Delete entries for good.\n\n\b\nExample:\n  genqueue dlq delete demo-1a2b-17 --yes")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@queue_option
@json_option
def delete(job_ids, yes, queue, as_json) -> None:
    from ..backend import audit

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
    deleted = [r["id"] for r in results if r["deleted"]]
    if deleted:
        audit.record(app.connection, "delete", app.settings.queue, counts={"deleted": len(deleted)}, ids=deleted)
    if as_json:
        emit_json({"queue": app.settings.queue, "results": results})
    if worst is not None:
        sys.exit(worst.exit_code)
