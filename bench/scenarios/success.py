"""Scenario 2 — success path: N no-op jobs drained in burst mode by one worker, forking and simple classes
separately: genqueue GenWorker / GenSimpleWorker vs rq.Worker / rq.SimpleWorker (JSON serializer, the same
job function, the same enqueued jobs)."""

from __future__ import annotations

from .common import Ctx, Scenario, alternate, compare, drop_queue, timed
from .jobs import NOOP

ENQUEUE_BATCH = 1000


def fill_queue(ctx: Ctx, name: str, n: int, func: str = NOOP, payload=lambda i: {"i": i}, **job_options) -> list[str]:
    """Enqueue n jobs (not timed) with ids `<queue>-<i>`; returns the ids."""
    from rq import Queue

    from genqueue.backend.queues import make_queue

    queue = make_queue(ctx.conn, name)
    ids = [f"{name}-{i}" for i in range(n)]
    for start in range(0, n, ENQUEUE_BATCH):
        queue.enqueue_many(
            [
                Queue.prepare_data(func, (payload(i),), job_id=ids[i], **job_options)
                for i in range(start, min(n, start + ENQUEUE_BATCH))
            ]
        )
    return ids


def _without_commands(cls):
    """RQ's worker class minus its command pub/sub, for the bare-RQ anchor of an in-process burst drain: at
    teardown RQ stops that thread on redis-py's 60 s poll, a stall that lands inside the timed work() call at
    random (genqueue's workers poll it every 0.25 s). A burst drain takes no commands; leaving the pub/sub out
    spares RQ a connection and a thread, so the anchor errs in RQ's favour."""

    class Quiet(cls):
        def subscribe(self) -> None:
            return None

    Quiet.__name__ = Quiet.__qualname__ = f"Quiet{cls.__name__}"
    return Quiet


def _quiet_classes():
    from rq import SimpleWorker, Worker

    return _without_commands(SimpleWorker), _without_commands(Worker)


_QuietSimple, _QuietForking = _quiet_classes()


def make_worker(ctx: Ctx, system: str, name: str, *, simple: bool, settings=None):
    from genqueue.backend.queues import SERIALIZER, make_queue
    from genqueue.settings import Settings
    from genqueue.worker.classes import build_worker

    if system == "rq":
        cls = _QuietSimple if simple else _QuietForking
        return cls([make_queue(ctx.conn, name)], connection=ctx.conn, serializer=SERIALIZER)
    settings = settings or Settings(redis_url=ctx.url, home=ctx.home, queue=name)
    return build_worker(ctx.conn, settings, [name], simple=simple)


def drain(worker) -> float:
    """Seconds for one burst-mode work() call (RQ logs at INFO, into /dev/null: see common.quiet_logs)."""
    return timed(lambda: worker.work(burst=True, logging_level="INFO"))


def check_finished(ctx: Ctx, name: str, n: int) -> None:
    from rq.registry import FinishedJobRegistry

    from genqueue.backend.queues import SERIALIZER

    done = FinishedJobRegistry(name, connection=ctx.conn, serializer=SERIALIZER).count
    left = ctx.conn.llen(f"rq:queue:{name}")
    if done != n or left:
        raise RuntimeError(f"{name}: {done}/{n} jobs finished, {left} still queued")


def run(ctx: Ctx) -> Scenario:
    sizes = {"simple": ctx.sizes.success_jobs, "forking": ctx.sizes.fork_jobs}
    sc = Scenario("success", "Success path: no-op jobs drained in burst mode by one worker", sizes=dict(sizes))
    for kind, n in (("simple", sizes["simple"]), ("forking", sizes["forking"])):
        simple = kind == "simple"

        def runner(system: str, kind: str = kind, n: int = n, simple: bool = simple):
            def one(rep: int) -> float:
                name = ctx.name(f"ok-{kind}-{system}-{rep}")
                ids = fill_queue(ctx, name, n)
                worker = make_worker(ctx, system, name, simple=simple)
                try:
                    seconds = drain(worker)
                    check_finished(ctx, name, n)
                    return n / seconds
                finally:
                    drop_queue(ctx.conn, name, ids)

            return one

        runs = alternate(ctx.reps, {"rq": runner("rq"), "genqueue": runner("genqueue")})
        compare(
            sc,
            kind,
            f"{n:,} jobs, {kind} worker",
            runs["rq"],
            runs["genqueue"],
            unit="jobs/s",
            higher_is_better=True,
            goal=1.05,
        )
    if sizes["forking"] != sizes["simple"]:
        sc.notes.append(
            f"forking workers drain {sizes['forking']:,} jobs, not {sizes['simple']:,}: a fork costs "
            "~20 ms per job on this machine for both systems, so 2,000 jobs × 6 runs would take minutes alone "
            "(--fork-jobs 2000 runs the full count)"
        )
    return sc
