"""Scenario 1 — enqueue N jobs with a ~1 KB payload, one by one and batched.

genqueue: `genqueue.jobs.enqueue.enqueue` (validation, genqueue meta, description). Bare RQ: `Queue.enqueue` and
`Queue.enqueue_many` with JSONSerializer, for the same function and payload. genqueue has no batched
enqueue API (DESIGN.md lists `enqueue_many`; producer.py has none), so its "batched" number is its
one-by-one enqueue, compared honestly against RQ's enqueue_many.
"""

from __future__ import annotations

import json

from .common import Ctx, Scenario, alternate, compare, drop_queue, timed

PAYLOAD_BYTES = 1024


def payload(i: int) -> dict:
    body = {"prompt": "", "model": "sim-1", "params": {"temperature": 0.7, "max_tokens": 512}, "user_id": f"u{i % 100}"}
    body["prompt"] = "a" * (PAYLOAD_BYTES - len(json.dumps(body)))
    return body


def has_batched_api() -> bool:
    import genqueue.jobs.enqueue

    return hasattr(genqueue.jobs.enqueue, "enqueue_many")


def run(ctx: Ctx) -> Scenario:
    from rq import Queue

    from genqueue.backend.queues import make_queue
    from genqueue.jobs.enqueue import enqueue
    from genqueue.tasks.generate import JOB_FUNC

    n = ctx.sizes.enqueue_jobs
    batch = ctx.sizes.enqueue_batch
    sc = Scenario(
        "enqueue",
        f"Enqueue {n:,} jobs with a ~1 KB payload",
        sizes={"jobs": n, "payload_bytes": PAYLOAD_BYTES, "rq_batch": batch},
    )
    payloads = [payload(i) for i in range(n)]

    def with_queue(label: str, body) -> float:
        name = ctx.name(label)
        queue = make_queue(ctx.conn, name)
        try:
            return n / timed(lambda: body(queue))
        finally:
            drop_queue(ctx.conn, name)

    def rq_one(rep: int) -> float:
        return with_queue(f"enq-rq1-{rep}", lambda q: [q.enqueue(JOB_FUNC, p) for p in payloads])

    def gq_one(rep: int) -> float:
        return with_queue(f"enq-gq1-{rep}", lambda q: [enqueue(ctx.conn, q.name, p) for p in payloads])

    def rq_many(rep: int) -> float:
        def body(q) -> None:
            for start in range(0, n, batch):
                q.enqueue_many([Queue.prepare_data(JOB_FUNC, (p,)) for p in payloads[start : start + batch]])

        return with_queue(f"enq-rqn-{rep}", body)

    def gq_many(rep: int) -> float:
        if has_batched_api():
            import genqueue.jobs.enqueue as producer

            return with_queue(f"enq-gqn-{rep}", lambda q: producer.enqueue_many(ctx.conn, q.name, payloads))
        return gq_one(rep)

    one = alternate(ctx.reps, {"rq": rq_one, "genqueue": gq_one})
    many = alternate(ctx.reps, {"rq": rq_many, "genqueue": gq_many})
    compare(
        sc,
        "one_by_one",
        "enqueue one by one",
        one["rq"],
        one["genqueue"],
        unit="jobs/s",
        higher_is_better=True,
        goal=1.0,
    )
    label = "enqueue batched" if has_batched_api() else "batched (gq: one by one)"
    compare(sc, "batched", label, many["rq"], many["genqueue"], unit="jobs/s", higher_is_better=True, goal=1.0)
    if not has_batched_api():
        sc.notes.append(
            "genqueue has no batched enqueue API: its batched number is genqueue.jobs.enqueue.enqueue "
            f"one by one, against RQ's Queue.enqueue_many in batches of {batch:,}"
        )
    return sc
