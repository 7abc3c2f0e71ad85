"""genqueue budgets set|show|clear — what a tenant may spend per UTC day or month, and what happens to its new
jobs once it has (refused, or parked until the period resets)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..usage.budgets import NO_TENANT, PERIOD_NAMES, UNITS, WHEN_SPENT, number
from .app import get_app
from .params import json_option
from .render import emit_json, table


@click.group(
    help="Budgets: caps on what a tenant spends (tokens, input/output tokens, images, usd) per UTC day (/d) or "
    "UTC calendar month (/month; /m means month here). When a cap is reached the tenant's new jobs are "
    "refused (exit 4, HTTP 402 BUDGET_SPENT) or, with --when-spent park, scheduled for the period's reset; "
    f"running jobs finish. {NO_TENANT!r} is the jobs with no tenant.\n\n\b\nExamples:\n"
    "  genqueue budgets set acme --usd 50/d --tokens 2M/month\n"
    "  genqueue budgets set free-tier --tokens 200k/month --when-spent park\n"
    "  genqueue budgets show\n  genqueue budgets clear acme"
)
def budgets() -> None:
    pass


def _cap_options(fn):
    for unit in reversed(UNITS):
        fn = click.option(
            f"--{unit.replace('_', '-')}",
            unit,
            multiple=True,
            metavar="N/d|N/month",
            help=f"Cap on {unit.replace('_', ' ')} per day or month, e.g. "
            + ("50/d" if unit == "usd" else "2M/month")
            + " (repeat for both periods).",
        )(fn)
    return fn


@budgets.command(
    "set",
    help="Set TENANT's budget, replacing the one it had; it applies from the next enqueue.\n\n\b\nExamples:\n"
    "  genqueue budgets set acme --usd 50/d --tokens 2M/month\n"
    "  genqueue budgets set acme --usd 50/d --usd 1000/month --when-spent park",
)
@click.argument("tenant")
@_cap_options
@click.option(
    "--when-spent",
    type=click.Choice(WHEN_SPENT),
    default="refuse",
    show_default=True,
    help="refuse: new jobs are refused (402); park: they are scheduled for the period's reset.",
)
@json_option
def set_(tenant: str, when_spent: str, as_json: bool, **caps: tuple[str, ...]) -> None:
    from ..usage.budget_store import describe, set_budget
    from ..usage.budgets import check_tenant, make_budget, parse_cap

    check_tenant(tenant)
    budget = make_budget([parse_cap(unit, text) for unit in UNITS for text in caps[unit]], when_spent)
    app = get_app(None, as_json)
    set_budget(app.connection, tenant, budget)
    _show([describe(app.connection, tenant, budget)], as_json)


@budgets.command(
    help="Every budget (or TENANT's) with what was used against each cap this period.\n\n\b\nExamples:\n"
    "  genqueue budgets show\n  genqueue budgets show acme --json"
)
@click.argument("tenant", required=False)
@json_option
def show(tenant: str | None, as_json: bool) -> None:
    from ..errors import NotFound
    from ..usage.budget_store import all_budgets, describe, get_budget

    app = get_app(None, as_json)
    if tenant is not None:
        budget = get_budget(app.connection, tenant)
        if budget is None:
            raise NotFound(f"tenant {tenant} has no budget")
        found = {tenant: budget}
    else:
        found = all_budgets(app.connection)
    _show([describe(app.connection, t, b) for t, b in found.items()], as_json)


@budgets.command(
    help="Remove TENANT's budget: its jobs are no longer capped.\n\n\b\nExample:\n  genqueue budgets clear acme"
)
@click.argument("tenant")
@json_option
def clear(tenant: str, as_json: bool) -> None:
    from ..usage.budget_store import clear_budget

    app = get_app(None, as_json)
    clear_budget(app.connection, tenant)
    if as_json:
        emit_json({"tenant": tenant, "cleared": True})
    else:
        click.echo(f"{tenant}: budget cleared")


def _show(rows: list[dict], as_json: bool) -> None:
    if as_json:
        emit_json({"data": rows})
        return
    if not rows:
        click.echo("no budgets (genqueue budgets set TENANT --usd 50/d)")
        return
    lines = []
    for r in rows:
        state = "SPENT" if r["spent"] else "ok"
        if r["spent"]:
            state += f" until {datetime.fromtimestamp(r['resets_at'], UTC):%Y-%m-%d %H:%M} UTC"
        for c in r["caps"]:
            lines.append(
                [
                    r["tenant"],
                    c["unit"],
                    f"{number(c['limit'])} per {PERIOD_NAMES[c['period']]}",
                    number(c["used"]),
                    r["when_spent"],
                    state,
                ]
            )
    click.echo(table(["TENANT", "UNIT", "BUDGET", "USED", "WHEN SPENT", "STATE"], lines))
