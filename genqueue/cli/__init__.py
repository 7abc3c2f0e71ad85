"""The genqueue command line. Commands are thin: parse, call the library, render.

Exit codes: 0 ok · 1 failed · 2 usage/invalid input · 3 not found · 4 conflict · 5 cannot reach the server.
Errors are one line on stderr (and, with --json, an {"error": {...}} envelope on stdout); never a traceback.
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import GenqueueError, ServerUnavailable
from .app import App

EXAMPLES = """
\b
Examples:
  genqueue demo                      # real workers, injected faults, live progress
  genqueue worker                    # run a worker (forking) on generation-queue
  genqueue enqueue --payload '{"prompt": "a red fox"}'
  genqueue dlq list                  # what was dead-lettered, newest first
"""


@click.group(help="Redis-backed workers for generation jobs, with classified retries and a DLQ.\n" + EXAMPLES)
@click.version_option(package_name="genqueue")
@click.pass_context
def cli(ctx: click.Context) -> None:
    from ..settings import Settings
    from ..support.logs import configure

    settings = Settings.from_env()
    configure(settings.log_format)  # log lines go to stderr: stdout is for tables and --json
    ctx.obj = App(settings)


def _register() -> None:
    from . import (  # noqa: F401 - they add to the dlq group
        admin,
        api,
        budgets,
        credits,
        demo,
        dlq,
        dlq_bulk,
        dlq_shared,
        jobs,
        limits,
        runs,
        server,
        tenants,
        usage,
        webhooks,
        worker,
    )

    cli.add_command(demo.demo)
    cli.add_command(worker.worker)
    cli.add_command(jobs.enqueue)
    cli.add_command(jobs.jobs)
    cli.add_command(jobs.tasks)
    cli.add_command(limits.limits)
    cli.add_command(dlq_shared.dlq)
    cli.add_command(server.server)
    cli.add_command(admin.audit)
    cli.add_command(admin.scheduler)
    cli.add_command(runs.runs)
    cli.add_command(credits.credits)
    cli.add_command(tenants.tenants)
    cli.add_command(budgets.budgets)
    cli.add_command(usage.usage)
    cli.add_command(webhooks.webhooks)
    cli.add_command(api.api)


_register()


def _fail(message: str, exit_code: int, code: str, retryable: bool, as_json: bool) -> None:
    if as_json:
        envelope = {"error": {"code": code, "message": message, "status_code": exit_code, "retryable": retryable}}
        click.echo(json.dumps(envelope))
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        result = cli.main(args=args, prog_name="genqueue", standalone_mode=False)
        if isinstance(result, int) and result:
            sys.exit(result)
    except GenqueueError as exc:
        _fail(str(exc), exc.exit_code, exc.code, exc.retryable, as_json)
    except click.UsageError as exc:
        hint = (
            f" (see 'genqueue {exc.ctx.command_path.partition(' ')[2]} --help')".replace("  ", " ") if exc.ctx else ""
        )
        _fail(exc.format_message() + hint, 2, "INVALID_INPUT", False, as_json)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code, "FAILED", False, as_json)
    except click.Abort:
        _fail("aborted", 1, "ABORTED", False, as_json)
    except KeyboardInterrupt:
        _fail("interrupted", 130, "INTERRUPTED", False, as_json)
    except Exception as exc:  # a server that vanished mid-command is the one expected "unexpected" error
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            err = ServerUnavailable(f"lost the connection to Redis: {exc}")
            _fail(str(err), err.exit_code, err.code, True, as_json)
        raise
