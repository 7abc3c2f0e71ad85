"""genqueue worker — a real RQ worker (forking by default) with genqueue's failure path."""

from __future__ import annotations

import contextlib
import os
import sys

import click
from redis.exceptions import RedisError

from .app import get_app
from .params import queue_option


@click.command(
    help="Run a worker on QUEUE... (default: the --queue / $GENQUEUE_QUEUE queue). Every worker also brings "
    "due retries back (one at a time per queue) and retries jobs abandoned by dead workers. A lost server is "
    "waited for (GENQUEUE_REDIS_OUTAGE_S, default 60 s) before the worker exits with code 5. Exit statuses: 0 a clean "
    "stop (SIGTERM/SIGINT, --burst done), 2 a configuration error at start, 5 the server away too long, 6 retired "
    "(too many stuck threads), 70 an unexpected error in the worker itself; a job never stops it. It runs registered "
    "tasks only: the built-in generate, and the @genqueue.task functions of the --tasks modules; any other job is "
    "dead-lettered as unknown_task.\n\n\b\nExamples:\n  genqueue worker\n  genqueue worker --simple --burst\n"
    "  genqueue worker --tasks myapp.tasks --path src\n  genqueue worker --concurrency 50 --tasks myapp.tasks"
)
@click.argument("queues", nargs=-1)
@queue_option
@click.option("--simple", is_flag=True, help="Run jobs in-process (rq SimpleWorker) instead of a forked work horse.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run up to N jobs at once in this one process: async tasks on an event loop, sync tasks on N "
    "threads (default: $GENQUEUE_CONCURRENCY; unset: one job at a time in a forked work horse).",
)
@click.option(
    "--max-stuck-threads",
    type=click.IntRange(min=0, max=10_000),
    default=4,
    envvar="GENQUEUE_MAX_STUCK_THREADS",
    show_default=True,
    metavar="N",
    help="With --concurrency: when more than N threads are still stuck past their job's timeout (in C code, or "
    "the job swallowed the timeout), take no more jobs, let the running ones finish and exit with status 6 "
    "(for the supervisor to restart the worker). Also $GENQUEUE_MAX_STUCK_THREADS.",
)
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@click.option(
    "--maintenance-interval",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds between registry cleanups (default: RQ's 600).",
)
@click.option(
    "--tasks",
    "task_modules",
    default=None,
    metavar="MODULE[,MODULE]",
    help="Modules whose @genqueue.task functions this worker runs (default: $GENQUEUE_TASKS).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A directory to import task modules from (repeatable; the working directory always is).",
)
def worker(
    queues: tuple[str, ...],
    queue: str | None,
    simple: bool,
    concurrency: int | None,
    max_stuck_threads: int,
    burst: bool,
    name: str | None,
    maintenance_interval: int | None,
    task_modules: str | None,
    paths: tuple[str, ...],
) -> None:
    from ..backend.connection import connect
    from ..backend.outage import OutageTooLong
    from ..errors import GenqueueError, ServerUnavailable
    from ..support.logs import configure
    from ..tasks.registry import import_task_modules
    from ..worker import build_worker
    from ..worker.duties import EXIT_INTERNAL, WorkerLoopError

    app = get_app(queue)
    configure(app.settings.log_format)
    modules = task_modules.split(",") if task_modules is not None else app.settings.tasks
    import_task_modules(modules, paths)  # before connecting: a bad module is exit 2, nothing started
    from ..worker.limiting import default_cooldown_s

    default_cooldown_s()  # a bad GENQUEUE_BREAKER_COOLDOWN is exit 2 now, not an error in every job's release
    from ..support.secrets import check_credentials

    check_credentials(os.environ)  # a credential with a newline: exit 2 naming it, before any job sends it
    if (os.environ.get("GENQUEUE_PROVIDER") or "simulated").strip().lower() != "simulated":
        from ..tasks.providers import provider_from_env

        # Built once and dropped: a misconfigured provider (no SDK, no key, no URL) is exit 2 now instead of a
        # retried failure in every job, and its SDK is imported here, before any fork, not in every horse.
        provider_from_env(os.environ)
    concurrency = concurrency or (None if simple else app.settings.concurrency)
    if simple and concurrency:
        raise click.UsageError("--simple and --concurrency exclude each other (a concurrent worker runs in-process)")
    names = list(queues) or [app.settings.queue]
    kwargs: dict[str, str | int] = {"name": name} if name else {}  # RQ Worker's own options
    if maintenance_interval:
        kwargs["maintenance_interval"] = maintenance_interval
    if concurrency:
        kwargs["max_stuck_threads"] = max_stuck_threads
    # Patient: a server restart or blip of up to GENQUEUE_REDIS_OUTAGE_S is waited out, not fatal.
    connection = connect(app.settings, patient=True)
    w = build_worker(connection, app.settings, names, simple=simple, concurrency=concurrency, **kwargs)
    from ..webhooks.deliver import ensure_registered

    ensure_registered()  # the built-in delivery task: any worker may be given the webhook queue
    if app.settings.webhook_queue in names:  # and such a worker relays subscribed jobs' events to it
        from ..webhooks.relay import RELAY_TICK_S, Relay

        relay = Relay(connection, app.settings.webhook_queue, app.settings.webhook_timeout_s)
        w.extra_duties = ((RELAY_TICK_S, relay.tick),)
    from ..tasks import catalogue
    from ..tasks.registry import registered

    catalogue.publish(connection, w.name, registered())  # what enqueue by name checks against (catalogue.py)
    try:
        w.work(burst=burst, logging_level="WARNING")
    except OutageTooLong as exc:
        raise ServerUnavailable(f"worker {w.name} stopping: {exc}") from None
    except WorkerLoopError as exc:  # one line, a status of its own: not a clean stop, restart me
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.code)
    except GenqueueError:
        raise
    except Exception as exc:  # noqa: BLE001 - outside RQ's loop (start, teardown): the same one line and status
        click.echo(f"error: {WorkerLoopError(w.name, exc).message}", err=True)
        sys.exit(EXIT_INTERNAL)
    with contextlib.suppress(RedisError, OSError):  # a worker that cannot (or dies) is pruned by the sweep
        catalogue.withdraw(connection, w.name)
    if w.exit_status:  # it retired itself (too many stuck threads); the log line said why
        sys.exit(w.exit_status)
