"""genqueue tenants set|show — each tenant's weight in the fair pop, and what it has waiting."""

from __future__ import annotations

import click

from ..tenants.fairness import MAX_WEIGHT, NO_TENANT
from .app import get_app
from .params import json_option, queue_option
from .render import emit_json, table


@click.group(
    help="Fair scheduling: at each queue, tenants take turns, each taking up to its weight in jobs per turn "
    f"(default 1); the jobs with no tenant share one turn, named {NO_TENANT!r} here.\n\n\b\nExamples:\n"
    "  genqueue tenants set acme --weight 3\n  genqueue tenants show --queue generation-queue"
)
def tenants() -> None:
    pass


@tenants.command(
    "set",
    help=f"Set TENANT's weight (1-{MAX_WEIGHT}; 1 is the default). It applies from the tenant's next turn.\n\n\b\n"
    f"Examples:\n  genqueue tenants set acme --weight 3\n  genqueue tenants set '{NO_TENANT}' --weight 2",
)
@click.argument("tenant")
@click.option("--weight", type=int, required=True, help="Jobs per turn.")
@json_option
def set_(tenant: str, weight: int, as_json: bool) -> None:
    from ..tenants.weights import set_weight

    app = get_app(None, as_json)
    value = set_weight(app.connection, tenant, weight)
    if as_json:
        emit_json({"tenant": tenant, "weight": value})
    else:
        click.echo(f"{tenant}: weight {value}")


@tenants.command(
    help="Every tenant with a weight or jobs waiting in the queue: its weight and its waiting jobs (the queue's "
    "lanes; `rq info` counts only the few jobs fed to RQ's list).\n\n\b\nExample:\n  genqueue tenants show --json"
)
@queue_option
@json_option
def show(queue: str | None, as_json: bool) -> None:
    from ..tenants.fair import waiting, waiting_by_tenant
    from ..tenants.weights import weights

    app = get_app(queue, as_json)
    name = app.settings.queue
    given = weights(app.connection)
    lanes = {(t or NO_TENANT): n for t, n in waiting_by_tenant(app.connection, name).items()}
    rows = [{"tenant": t, "weight": given.get(t, 1), "waiting": lanes.get(t, 0)} for t in sorted({*given, *lanes})]
    total = waiting(app.connection, [name])[name]
    if as_json:
        emit_json({"queue": name, "waiting": total, "tenants": rows})
        return
    click.echo(f"{name}: {total} job(s) waiting")
    if rows:
        click.echo(table(["TENANT", "WEIGHT", "WAITING"], [[r["tenant"], r["weight"], r["waiting"]] for r in rows]))
