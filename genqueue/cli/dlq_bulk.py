"""genqueue dlq purge / stats / export / import / recover, and the bulk runner shared with `retry --all`."""

from __future__ import annotations

import sys

import click

from .app import get_app
from .dlq_shared import build_filters, bulk_options, dlq, filter_options, run_bulk
from .params import json_option, queue_option
from .render import emit_json, table


@dlq.command(
    help="Delete every entry matching the filters.\n\n\b\n"
    "Examples:\n  genqueue dlq purge --reason non_retryable --dry-run\n"
    "  genqueue dlq purge --until 3d --yes\n  genqueue dlq purge --yes          # everything"
)
@filter_options
@bulk_options
@queue_option
@json_option
def purge(kind, func, user, reason, fingerprint, since, until, dry_run, rate, cursor, yes, queue, as_json) -> None:
    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    app = get_app(queue, as_json)
    run_bulk(app, app.store(), "purge", filters, dry_run=dry_run, rate=rate, cursor=cursor, yes=yes)


@dlq.command(
    help="Totals, breakdowns, top error fingerprints, the last 24 h, counters.\n\n\b\nExamples:\n"
    "  genqueue dlq stats\n  genqueue dlq stats --kind RATE_LIMITED --json"
)
@filter_options
@queue_option
@json_option
def stats(kind, func, user, reason, fingerprint, since, until, queue, as_json) -> None:
    from ..dlq.stats import dlq_stats

    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    app = get_app(queue, as_json)
    s = dlq_stats(app.store(), filters)
    if as_json:
        emit_json(s)
        return
    age = s["oldest_age_s"]
    click.echo(f"{s['dlq']}: {s['total']} entries" + (f", oldest {age / 3600:.1f} h old" if age is not None else ""))
    click.echo(f"last 24 h (hourly, oldest → now): {s['sparkline']}  ({sum(s['hourly_last_24h'])} dead-lettered)")
    c = s["counters"]
    if c is None:  # lifetime counts of the whole queue: they cannot be filtered
        click.echo("counters: for the whole queue only (without filters)")
    else:
        click.echo(
            f"counters: dead-lettered {c['dead_lettered']}, replayed {c['replayed']}, expired {c['expired']}, "
            f"evicted {c['evicted']}, imported {c['imported']}"
        )
    for title, key in (("kind", "by_kind"), ("reason", "by_reason"), ("func", "by_func"), ("user", "by_user")):
        if s[key]:
            rows = sorted(s[key].items(), key=lambda kv: -kv[1])[:10]
            click.echo("\n" + table((title, "entries"), rows))
    if s["top_fingerprints"]:
        rows = [(f["fingerprint"], f["count"], (f["sample"] or "")[:70]) for f in s["top_fingerprints"]]
        click.echo("\n" + table(("fingerprint", "entries", "sample"), rows))


@dlq.command(
    "export",
    help="Write matching entries as JSON lines (stdout by default). Secrets are masked "
    "unless --include-secrets.\n\n\b\nExamples:\n  genqueue dlq export -o dlq.jsonl\n"
    "  genqueue dlq export --kind PERMANENT --since 1d | jq .error.message",
)
@filter_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None)
@click.option("--include-secrets", is_flag=True, help="Keep api keys, tokens, … as they are (for a faithful backup).")
@queue_option
def export(kind, func, user, reason, fingerprint, since, until, output, include_secrets, queue) -> None:
    from ..backend import audit
    from ..dlq.transfer import export_chunks

    filters = build_filters(kind, func, user, reason, fingerprint, since, until)
    app = get_app(queue)
    n = 0
    fh = open(output, "wb") if output else sys.stdout.buffer
    try:
        for chunk, lines in export_chunks(app.store(), filters, include_secrets=include_secrets):
            fh.write(chunk)
            n += lines
    finally:
        if output:
            fh.close()
    audit.record(
        app.connection,
        "export",
        app.settings.queue,
        filters={k: v for k, v in vars(filters).items() if v},
        counts={"exported": n},
        note="with secrets" if include_secrets else None,
    )
    if output:
        click.echo(f"exported {n} entries to {output}", err=True)


@dlq.command(
    "import",
    help="Restore entries from a JSONL export, exactly. Nothing is imported if any line is "
    "malformed (unless --skip-bad) or any id already exists (unless --overwrite).\n\n\b\n"
    "Example:\n  genqueue dlq import dlq.jsonl",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--skip-bad", is_flag=True, help="Import the good lines and report the bad ones.")
@click.option("--overwrite", is_flag=True, help="Replace entries whose id already exists.")
@queue_option
@json_option
def import_(file, skip_bad, overwrite, queue, as_json) -> None:
    from ..backend import audit
    from ..dlq.transfer import import_file

    app = get_app(queue, as_json)
    with click.open_file(file, encoding="utf-8") as fh:
        result = import_file(app.store(), fh, skip_bad=skip_bad, overwrite=overwrite)
    audit.record(
        app.connection,
        "import",
        app.settings.queue,
        counts={
            "imported": result.imported,
            "expired": result.expired,
            "bad_lines": len(result.bad_lines),
            "replaced": result.replaced,
        },
        note=str(file),
    )
    for number, why in result.bad_lines:
        click.echo(f"warning: skipped line {number}: {why}", err=True)
    if as_json:
        emit_json(
            {
                "imported": result.imported,
                "expired": result.expired,
                "replaced": result.replaced,
                "bad_lines": [{"line": n, "error": w} for n, w in result.bad_lines],
            }
        )
    else:
        click.echo(
            f"imported {result.imported} entries"
            + (f" ({result.expired} already expired, skipped)" if result.expired else "")
        )


@dlq.command(
    help="Move jobs stranded in RQ's FailedJobRegistry, and jobs left in the started registry by dead "
    "workers, into the DLQ (reason `recovered`). Safe to run any time, any number of times.\n\n\b\n"
    "Example:\n  genqueue dlq recover"
)
@queue_option
@json_option
def recover(queue, as_json) -> None:
    from ..backend import audit
    from ..retry.manager import RetryManager
    from ..worker.recover import recover_failed, recover_orphans

    app = get_app(queue, as_json)
    store = app.store()
    manager = RetryManager.from_settings(app.settings)
    failed, unreadable = recover_failed(store, manager)
    orphans = recover_orphans(store, manager)
    counts = {"from_failed_registry": failed, "from_started_registry": orphans, "unreadable": len(unreadable)}
    audit.record(app.connection, "recover", app.settings.queue, counts=counts, ids=unreadable)
    if as_json:
        emit_json({"queue": app.settings.queue, **counts, "unreadable_ids": unreadable})
    else:
        click.echo(
            f"recovered {failed} from RQ's failed registry and {orphans} orphaned started jobs into "
            f"{store.keys.dlq_name}"
        )
        if unreadable:
            click.echo(
                f"warning: {len(unreadable)} failed job(s) are not JSON jobs (pickled?) and were left in "
                f"RQ's failed registry: {', '.join(unreadable[:10])}",
                err=True,
            )
