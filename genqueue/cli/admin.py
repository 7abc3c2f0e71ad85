"""genqueue audit / genqueue scheduler."""

from __future__ import annotations

import datetime as dt
import os
import socket

import click

from .app import get_app
from .params import json_option, queue_option
from .render import emit_json, short, table


@click.command(
    help="Recent admin actions on the DLQ (who, what, filters, counts).\n\n\b\nExamples:\n"
    "  genqueue audit\n  genqueue audit --limit 100 --json"
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@json_option
def audit(limit, as_json) -> None:
    from ..backend import audit as audit_log

    app = get_app(None, as_json)
    rows = audit_log.recent(app.connection, limit)
    if as_json:
        emit_json({"entries": rows})
        return
    if not rows:
        click.echo("no admin actions recorded yet")
        return
    click.echo(
        table(
            ("when (UTC)", "who", "action", "queue", "counts", "filters"),
            [
                (
                    dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    r["who"],
                    r["action"],
                    r["queue"],
                    short(r["counts"], 40),
                    short(r["filters"], 40),
                )
                for r in rows
            ],
        )
    )


@click.command(
    help="Periodic maintenance (its own process; see the Procfile): retry abandoned jobs as "
    "CRASH (also those RQ's cleanup failed), prune past retention, alert on size/rate (log + optional webhook), "
    "auto-retry chosen kinds after a cooldown.\n\n\b\n"
    "Examples:\n  genqueue scheduler\n  GENQUEUE_AUTO_RETRY=RATE_LIMITED=15m genqueue scheduler\n"
    "  genqueue scheduler --once --json"
)
@click.argument("queues", nargs=-1)
@queue_option
@click.option("--once", is_flag=True, help="Run one pass and exit.")
@json_option
def scheduler(queues, queue, once, as_json) -> None:
    from ..backend.connection import connect
    from ..backend.outage import OutageTooLong
    from ..dlq.maintenance import MaintenanceConfig, run_forever, run_once
    from ..dlq.store import DLQStore
    from ..errors import ServerUnavailable
    from ..retry.manager import RetryManager
    from ..support.logs import configure
    from ..worker.sweep import restart_grace_s, sweep_queue

    app = get_app(queue, as_json)
    configure(app.settings.log_format)
    config = MaintenanceConfig.from_env(os.environ)
    names = list(queues) or [app.settings.queue]
    settings = app.settings
    manager = RetryManager.from_settings(settings)

    def sweep(name: str) -> int:
        store = DLQStore(connection, name, retention_s=settings.dlq_retention_s)
        return sweep_queue(connection, name, manager, store, grace_s=restart_grace_s(settings))

    if once:
        connection = app.connection
        report = run_once(connection, names, config, settings.dlq_retention_s, sweep)
        if as_json:
            emit_json(report)
        else:
            for name, r in report.items():
                click.echo(
                    f"{name}: pruned {r['expired']} expired, {len(r['alerts'])} alert(s), "
                    f"auto-retried {r['auto_retried']}"
                )
        return
    connection = connect(settings, patient=True)  # a server outage is waited out, like in workers
    try:
        run_forever(
            connection, names, config, settings.dlq_retention_s, f"{socket.gethostname()}:{os.getpid()}", sweep=sweep
        )
    except OutageTooLong as exc:
        raise ServerUnavailable(f"scheduler stopping: {exc}") from None
