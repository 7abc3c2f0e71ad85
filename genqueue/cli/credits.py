"""genqueue credits set|add|show TENANT — retry credits for runs retry-failed (opt-in per tenant)."""

from __future__ import annotations

import click

from .app import get_app
from .params import json_option
from .render import emit_json


@click.group(
    help="Retry credits: a tenant with a balance pays one credit per charged item retry of "
    "`runs retry-failed` (crashes are free); a tenant without one is unlimited.\n\n\b\nExamples:\n"
    "  genqueue credits set acme 100\n  genqueue credits add acme 20\n  genqueue credits show acme"
)
def credits() -> None:
    pass


def _show(tenant: str, value: int | None, as_json: bool) -> None:
    if as_json:
        emit_json({"tenant": tenant, "credits": value, "unlimited": value is None})
    else:
        click.echo(f"{tenant}: {'unlimited (no balance)' if value is None else f'{value} credit(s)'}")


@credits.command("set", help="Set TENANT's balance to AMOUNT.\n\n\b\nExample:\n  genqueue credits set acme 100")
@click.argument("tenant")
@click.argument("amount", type=click.IntRange(min=0))
@json_option
def set_(tenant: str, amount: int, as_json: bool) -> None:
    from ..tenants import credits as lib

    app = get_app(None, as_json)
    lib.check_tenant(tenant)
    _show(tenant, lib.set_balance(app.connection, tenant, amount), as_json)


@credits.command(
    help="Add AMOUNT (negative takes away) to TENANT's balance.\n\n\b\nExample:\n"
    "  genqueue credits add acme 20\n  genqueue credits add acme -- -5"
)
@click.argument("tenant")
@click.argument("amount", type=int)
@json_option
def add(tenant: str, amount: int, as_json: bool) -> None:
    from ..tenants import credits as lib

    app = get_app(None, as_json)
    lib.check_tenant(tenant)
    _show(tenant, lib.add(app.connection, tenant, amount), as_json)


@credits.command(help="TENANT's balance.\n\n\b\nExample:\n  genqueue credits show acme --json")
@click.argument("tenant")
@json_option
def show(tenant: str, as_json: bool) -> None:
    from ..tenants import credits as lib

    app = get_app(None, as_json)
    lib.check_tenant(tenant)
    _show(tenant, lib.balance(app.connection, tenant), as_json)
