"""A live worker's execution that is not one of its current claims (what a failover's rollback leaves: the
new primary still holds a claim the worker finished on the former one) is swept as an uncharged CRASH within
the usual detection delay, not left in the started registry for RQ's 90 s expiry."""

from __future__ import annotations

import time
import uuid

from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.status import job_status
from tests.helpers import WorkerProcess, wait_for

FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}


def test_a_claim_its_live_worker_no_longer_lists_is_retried_as_crash(conn, settings, store, env):
    queue = settings.queue
    job_id = enqueue(conn, queue, {"prompt": "p"}, max_retries=0).job.id
    conn.lrem(f"rq:queue:{queue}", 0, job_id)  # as if popped and started on the former primary
    name = f"w-{queue}"  # the session's server is shared: other tests' workers are registered too
    worker = WorkerProcess(dict(env, **FAST), queue, extra=("--name", name))
    try:
        wait_for(lambda: conn.exists(f"genqueue:claims:{name}"), message="the worker to publish its claims")
        execution = uuid.uuid4().hex
        member = f"{job_id}:{execution}"
        conn.hset(f"rq:job:{job_id}", mapping={"status": "started", "worker_name": name})
        conn.hset(f"rq:execution:{member}", mapping={"worker_name": name, "job_id": job_id})
        conn.zadd(f"rq:wip:{queue}", {member: time.time() + 90})  # a score a live worker's beat kept ahead
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=30,
            message="the stale claim to be swept and the job to run",
        )
        assert worker.alive()
    finally:
        worker.stop()
    [h] = info["history"]
    assert (h["kind"], h["error"]["type"], h["charged"], h["action"]) == ("CRASH", "AbandonedJob", False, "retry")
    assert conn.zcard(f"rq:wip:{queue}") == 0
    assert "sweep.stale_claim" in worker.log()
