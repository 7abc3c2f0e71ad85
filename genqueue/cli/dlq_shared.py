"""What `genqueue dlq`'s commands share: the group, the filter and bulk options, confirmation, and the bulk
runner behind `retry --all` and `purge`. dlq.py and dlq_bulk.py both add their commands to the group here."""

from __future__ import annotations

import sys
from collections import Counter

import click

from ..errors import InvalidInput
from .render import emit_json

# retry.kinds.Reason's values, spelled out: importing genqueue.retry here would slow every command's
# start-up (tests/unit/test_settings_and_params.py keeps the two in step).
REASONS = (
    "exhausted",
    "non_retryable",
    "crash_loop",
    "manual",
    "recovered",
    "unknown_task",
    "rate_limit_wait_exceeded",
)


def filter_options(fn):
    for option in reversed(
        [
            click.option("--kind", default=None, help="Error kind, e.g. RATE_LIMITED."),
            click.option("--func", default=None, help="Job function, e.g. genqueue.jobs.generate."),
            click.option("--user", default=None, help="payload.user_id."),
            click.option("--reason", type=click.Choice(REASONS), default=None, help="Why it was dead-lettered."),
            click.option("--fingerprint", default=None, help="Error fingerprint (groups similar errors)."),
            click.option("--since", default=None, help="Dead-lettered after: 2h ago, or an ISO timestamp."),
            click.option("--until", default=None, help="Dead-lettered before: 30m ago, or an ISO timestamp."),
        ]
    ):
        fn = option(fn)
    return fn


def bulk_options(fn):
    """--dry-run, --rate, --cursor, --yes: shared by `retry --all` and `purge`."""
    for option in reversed(
        [
            click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing."),
            click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="At most N entries per second."),
            click.option("--cursor", default=None, help="Resume a bulk run after this cursor."),
            click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        ]
    ):
        fn = option(fn)
    return fn


def build_filters(kind, func, user, reason, fingerprint, since, until):
    from ..dlq.store import Filters

    return Filters.parse(
        kind=kind,
        func=func,
        user=user,
        reason=reason,
        fingerprint=fingerprint,
        since=since,
        until=until,
        since_name="--since",
        until_name="--until",
    )


@click.group(help="The dead-letter queue: list, show, retry, delete, purge, stats, export, import, recover.")
def dlq() -> None:
    pass


def confirm_destructive(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput("refusing a destructive action without --yes when stdin is not a terminal")
    click.confirm(question, abort=True)


DRY_RUN_SHOWN = 20


def run_bulk(app, store, action: str, filters, *, dry_run: bool, rate, cursor, yes: bool, force: bool = False):
    """Dry run, confirmation, progress bar, Ctrl-C with a resume cursor, audit — for retry --all and purge."""
    from ..backend import audit
    from ..dlq.bulk import bulk_purge, bulk_replay, count_matching, matching
    from ..dlq.entry import decode

    verb = "replay" if action == "retry" else "purge"
    total = count_matching(store, filters)
    filter_dict = {k: v for k, v in vars(filters).items() if v is not None}
    if dry_run:
        kinds: Counter[str] = Counter()
        sample: list[str] = []
        for batch in matching(store, filters, cursor):
            for job_id, _, raw in batch:
                try:
                    kinds[decode(raw, job_id)["error"].get("kind")] += 1
                except Exception:  # noqa: BLE001 - corrupt entries are counted as such
                    kinds["<corrupt>"] += 1
                if len(sample) < DRY_RUN_SHOWN:
                    sample.append(job_id)
        report = {
            "dry_run": True,
            "action": verb,
            "queue": app.settings.queue,
            "matching": sum(kinds.values()),
            "by_kind": dict(kinds),
            "sample": sample,
        }
        if app.as_json:
            emit_json(report)
        else:
            click.echo(
                f"dry run: would {verb} {report['matching']} entr{'y' if report['matching'] == 1 else 'ies'} "
                f"({', '.join(f'{k} {n}' for k, n in kinds.most_common()) or 'none'}); nothing changed"
            )
            for job_id in sample:
                click.echo(f"  {job_id}")
            if report["matching"] > len(sample):
                click.echo(f"  … and {report['matching'] - len(sample)} more")
        return
    if total == 0:
        raise click.ClickException(f"no entries in {store.keys.dlq_name} match; nothing to {verb}")
    confirm_destructive(
        f"{verb.capitalize()} {total} entr{'y' if total == 1 else 'ies'} of {store.keys.dlq_name}?", yes
    )
    result = None
    try:
        with click.progressbar(length=total, label=f"{verb}ing", file=sys.stderr, show_pos=True) as bar:
            kwargs = {"cursor": cursor, "rate": rate, "progress": bar.update}
            result = (
                bulk_replay(store, filters, force=force, **kwargs)
                if verb == "replay"
                else bulk_purge(store, filters, **kwargs)
            )
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted; entries already handled stay handled. Resume with the same command and "
            "--cursor <the last cursor printed>, or just run it again",
            err=True,
        )
        raise
    finally:
        if result is not None:
            counts = {("replayed" if verb == "replay" else "purged"): result.done, **result.skipped}
            audit.record(
                app.connection,
                "bulk_retry" if verb == "replay" else "purge",
                app.settings.queue,
                filters=filter_dict,
                counts=counts,
                ids=result.ids,
            )
    out = {
        "action": verb,
        "queue": app.settings.queue,
        "done": result.done,
        "skipped": result.skipped,
        "cursor": result.cursor,
    }
    if app.as_json:
        emit_json(out)
    else:
        skipped = ", ".join(f"{k} {n}" for k, n in result.skipped.items())
        click.echo(
            f"{verb}d {result.done} entr{'y' if result.done == 1 else 'ies'}"
            + (f"; skipped {skipped}" if skipped else "")
        )
