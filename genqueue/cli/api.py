"""genqueue api — the HTTP service (uvicorn); genqueue api token — mint a token for scripts and the demo."""

from __future__ import annotations

import importlib.util

import click

from ..errors import InvalidInput
from .app import get_app
from .params import parse_duration

# The import names of the `api` extra's packages (pyproject.toml): a worker-only install has none of them.
API_EXTRA_MODULES = ("fastapi", "uvicorn", "jwt", "limits", "prometheus_client", "jinja2", "multipart")


def require_api_extra() -> None:
    """Exit 2 in one line when the HTTP service's dependencies are not installed."""
    missing = [name for name in API_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidInput(
            f"genqueue api needs the api extra (missing: {', '.join(missing)}): pip install 'genqueue[api]'"
        )


@click.group(
    invoke_without_command=True,
    help="Serve the HTTP API (job status, job retry, runs, the DLQ for admins) with uvicorn.\n\n"
    "Without GENQUEUE_API_JWT_SECRET / GENQUEUE_API_JWT_PUBLIC_KEY it signs with a local secret "
    "under GENQUEUE_HOME and listens on 127.0.0.1 only.\n\n\b\nExamples:\n  genqueue api\n"
    "  genqueue api --port 8080 --workers 2\n  genqueue api token --sub alice",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    envvar="PORT",
    help="Port (honcho and foreman pass $PORT).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (they share the rate limit through Redis).",
)
@click.pass_context
def api(ctx: click.Context, host: str, port: int, workers: int) -> None:
    require_api_extra()
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from ..api.config import ApiConfig, check_bind
    from ..support.logs import configure
    from ..tasks.registry import import_task_modules

    app = get_app()
    configure(app.settings.log_format)
    check_bind(host, ApiConfig.from_env(app.settings.home))
    import_task_modules(app.settings.tasks)  # a bad GENQUEUE_TASKS is exit 2 here, not in every server process
    uvicorn.run(
        "genqueue.api.server:app",
        host=host,
        port=port,
        workers=workers,
        factory=False,
        log_level="warning",
        proxy_headers=False,
        access_log=False,
    )


@api.command(
    help="Print a bearer token signed with the configured (or local) key.\n\n\b\nExamples:\n"
    "  genqueue api token --sub alice\n  genqueue api token --sub ops --admin --ttl 8h\n"
    '  curl -H "Authorization: Bearer $(genqueue api token --sub alice)" localhost:8000/api/jobs/ID'
)
@click.option("--sub", required=True, help="The user (JWT sub).")
@click.option("--tenant", default=None, help="The tenant (default: the sub).")
@click.option("--admin", is_flag=True, help="Add the admin role (DLQ routes, every tenant).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, e.g. 30m, 8h, 7d.")
@click.option(
    "--login",
    is_flag=True,
    help="Also print a one-time dashboard login URL (valid 5 minutes, usable once) as the last line.",
)
@click.option(
    "--url",
    "base_url",
    default=None,
    help="The service's address for --login (default http://127.0.0.1:$PORT, or :8000).",
)
def token(sub: str, tenant: str | None, admin: bool, ttl: str, login: bool, base_url: str | None) -> None:
    import os

    from ..api.auth import mint
    from ..api.config import ApiConfig

    app = get_app()
    click.echo(
        mint(
            ApiConfig.from_env(app.settings.home),
            sub=sub,
            tenant=tenant,
            admin=admin,
            ttl_s=parse_duration(ttl).total_seconds(),
        )
    )
    if login:
        from ..api.ui.sessions import create_login
        from ..tenants.tenancy import ADMIN_ROLE, Principal

        code = create_login(app.connection, Principal(sub, tenant or sub, frozenset([ADMIN_ROLE] if admin else [])))
        base = (base_url or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}").rstrip("/")
        click.echo(f"{base}/ui/login?code={code}")
