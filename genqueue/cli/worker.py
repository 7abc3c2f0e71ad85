"""genqueue worker — a real RQ worker (forking by default) with genqueue's failure path."""

from __future__ import annotations

import os

import click

from .app import get_app
from .params import queue_option


@click.command(
    help="Run a worker on QUEUE... (default: the --queue / $GENQUEUE_QUEUE queue). Every worker also brings "
    "due retries back (one at a time per queue) and retries jobs abandoned by dead workers. A lost server is "
    "waited for (GENQUEUE_REDIS_OUTAGE_S, default 60 s) before the worker exits with code 5. It runs registered "
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
    burst: bool,
    name: str | None,
    maintenance_interval: int | None,
    task_modules: str | None,
    paths: tuple[str, ...],
) -> None:
    from ..backend.connection import connect
    from ..backend.outage import OutageTooLong
    from ..errors import ServerUnavailable
    from ..support.logs import configure
    from ..tasks.registry import import_task_modules
    from ..worker import build_worker

    app = get_app(queue)
    configure(app.settings.log_format)
    modules = task_modules.split(",") if task_modules is not None else app.settings.tasks
    import_task_modules(modules, paths)  # before connecting: a bad module is exit 2, nothing started
    from ..worker.limiting import default_cooldown_s

    default_cooldown_s()  # a bad GENQUEUE_BREAKER_COOLDOWN is exit 2 now, not an error in every job's release
    if (os.environ.get("GENQUEUE_PROVIDER") or "simulated").strip().lower() != "simulated":
        from ..tasks.providers import provider_from_env

        # Built once and dropped: a misconfigured provider (no SDK, no key, no URL) is exit 2 now instead of a
        # retried failure in every job, and its SDK is imported here, before any fork, not in every horse.
        provider_from_env(os.environ)
    concurrency = concurrency or (None if simple else app.settings.concurrency)
    if simple and concurrency:
        raise click.UsageError("--simple and --concurrency exclude each other (a concurrent worker runs in-process)")
    names = list(queues) or [app.settings.queue]
    kwargs = {"name": name} if name else {}
    if maintenance_interval:
        kwargs["maintenance_interval"] = maintenance_interval
    # Patient: a server restart or blip of up to GENQUEUE_REDIS_OUTAGE_S is waited out, not fatal.
    connection = connect(app.settings, patient=True)
    w = build_worker(connection, app.settings, names, simple=simple, concurrency=concurrency, **kwargs)
    from ..tasks import catalogue
    from ..tasks.registry import registered

    catalogue.publish(connection, w.name, registered())  # what enqueue by name checks against (catalogue.py)
    try:
        w.work(burst=burst, logging_level="WARNING")
    except OutageTooLong as exc:
        raise ServerUnavailable(f"worker {w.name} stopping: {exc}") from None
    catalogue.withdraw(connection, w.name)  # a worker that dies instead is pruned with it by the sweep
