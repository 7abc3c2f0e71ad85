"""genqueue usage — what tenants used (tokens, images, dollars), grouped by tenant, task and limit key."""

from __future__ import annotations

import click

from ..usage.budgets import UNITS, number
from ..usage.store import GROUPS
from .app import get_app
from .params import json_option, parse_duration
from .render import emit_json, table


@click.command(
    help="Usage recorded when jobs' attempts end (tokens, input/output tokens, images, usd), summed over the "
    f"hours since --since (whole UTC hours), grouped by {', '.join(GROUPS)}. The same rows are GET /api/usage."
    "\n\n\b\nExamples:\n  genqueue usage\n  genqueue usage --tenant acme --by task,key --since 7d\n"
    "  genqueue usage --json"
)
@click.option("--tenant", default=None, metavar="T", help="Only this tenant's usage ('*': jobs with no tenant).")
@click.option("--by", "by", default="tenant", show_default=True, metavar="FIELDS", help="Group by: tenant,task,key.")
@click.option("--since", default="24h", show_default=True, metavar="DURATION", help="How far back: 1h, 24h, 7d.")
@json_option
def usage(tenant: str | None, by: str, since: str, as_json: bool) -> None:
    from ..usage.budgets import check_tenant
    from ..usage.store import check_by, totals

    groups = check_by(by)
    since_s = parse_duration(since).total_seconds()
    if tenant is not None:
        check_tenant(tenant)
    app = get_app(None, as_json)
    rows = totals(app.connection, since_s, by=groups, tenant=tenant)
    if as_json:
        emit_json({"since_s": since_s, "by": list(groups), "tenant": tenant, "data": rows})
        return
    if not rows:
        click.echo(f"no usage recorded in the last {since}")
        return
    units = [u for u in UNITS if any(u in r["usage"] for r in rows)]
    click.echo(
        table(
            [g.upper() for g in groups] + [u.upper() for u in units],
            [[r[g] or "-" for g in groups] + [number(r["usage"].get(u, 0.0)) for u in units] for r in rows],
        )
    )
