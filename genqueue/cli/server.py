"""genqueue server start|stop|status — the embedded Valkey server's lifecycle."""

from __future__ import annotations

import click

from ..errors import InvalidInput
from .app import get_app
from .params import json_option
from .render import emit_json


def _embedded():
    app = get_app()
    if app.settings.redis_url:
        raise InvalidInput("REDIS_URL is set: genqueue uses that server and manages no embedded one")
    from ..backend.connection import EmbeddedServer

    return EmbeddedServer(app.settings.home)


@click.group(help="Manage the embedded Valkey server (used when REDIS_URL is not set).")
def server() -> None:
    pass


@server.command(help="Start the embedded server (no-op when it runs).\n\n\b\nExample:\n  genqueue server start")
@json_option
def start(as_json: bool) -> None:
    srv = _embedded()
    started = srv.start()
    st = srv.status()
    if as_json:
        emit_json({"started": started, "running": st.running, "url": st.url, "pid": st.pid, "home": st.home})
    else:
        click.echo(f"{'started' if started else 'already running'}: {st.url} (pid {st.pid})")


@server.command(help="Stop the embedded server, flushing its append-only file.\n\n\b\nExample:\n  genqueue server stop")
@json_option
def stop(as_json: bool) -> None:
    stopped = _embedded().stop()
    if as_json:
        emit_json({"stopped": stopped})
    else:
        click.echo("stopped" if stopped else "not running")


@server.command(
    help="Is the embedded server running, and at which URL?\n\n\b\n"
    "Example:\n  genqueue server status\n  rq info -u $(genqueue server status --url)"
)
@json_option
@click.option("--url", "url_only", is_flag=True, help="Print only the URL (for rq info -u / redis-cli -u).")
def status(as_json: bool, url_only: bool) -> None:
    app = get_app()
    if app.settings.redis_url:
        from ..backend.connection import redact

        url = redact(app.settings.redis_url)
        if as_json:
            emit_json({"embedded": False, "running": None, "url": url})
        else:
            click.echo(url if url_only else f"using REDIS_URL {url} (no embedded server)")
        return
    st = _embedded().status()
    if url_only:
        click.echo(st.url)
    elif as_json:
        emit_json({"embedded": True, "running": st.running, "url": st.url, "pid": st.pid, "home": st.home})
    else:
        click.echo(f"{'running' if st.running else 'stopped'}: {st.url}" + (f" (pid {st.pid})" if st.pid else ""))
        click.echo(f"home: {st.home}")
