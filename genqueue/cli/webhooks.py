"""genqueue webhooks secret — a tenant's own signing secret for its jobs' webhooks."""

from __future__ import annotations

import sys

import click

from .app import get_app
from .params import json_option
from .render import emit_json


@click.group(
    help="Completion webhooks (see the how-to): deliveries are jobs on GENQUEUE_WEBHOOK_QUEUE, signed with "
    "GENQUEUE_WEBHOOK_SECRET or the tenant's own secret.\n\n\b\nExamples:\n  genqueue webhooks secret acme\n"
    "  genqueue webhooks secret acme --remove"
)
def webhooks() -> None:
    pass


@webhooks.command(
    help="Give TENANT a signing secret of its own (a new whsec_…, printed once; or --stdin to read one), used "
    "instead of GENQUEUE_WEBHOOK_SECRET for its jobs' deliveries from the next one on; --remove goes back to "
    "the global secret. Audited.\n\n\b\nExamples:\n  genqueue webhooks secret acme\n"
    "  echo whsec_... | genqueue webhooks secret acme --stdin\n  genqueue webhooks secret acme --remove"
)
@click.argument("tenant")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the whsec_ secret from standard input.")
@click.option("--remove", is_flag=True, help="Remove the tenant's secret.")
@json_option
def secret(tenant: str, from_stdin: bool, remove: bool, as_json: bool) -> None:
    from ..backend import audit
    from ..errors import InvalidInput
    from ..webhooks.signing import set_tenant_secret

    if from_stdin and remove:
        raise InvalidInput("--stdin and --remove exclude each other")
    given = sys.stdin.read().strip() if from_stdin else None
    app = get_app(None, as_json)
    value = set_tenant_secret(app.connection, tenant, "" if remove else given)
    audit.record(app.connection, "webhook_secret_removed" if remove else "webhook_secret_set", "-", note=tenant)
    if as_json:
        emit_json({"tenant": tenant, "secret": None if remove or from_stdin else value, "removed": remove})
    elif remove:
        click.echo(f"{tenant}: webhook secret removed (GENQUEUE_WEBHOOK_SECRET signs its deliveries)")
    elif from_stdin:
        click.echo(f"{tenant}: webhook secret set")
    else:
        click.echo(value)
