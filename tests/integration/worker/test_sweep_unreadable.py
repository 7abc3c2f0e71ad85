"""One unreadable job never stops the sweep: a pickled job (a plain-RQ producer's) in FailedJobRegistry is
skipped, counted and logged once, and the steps after it still run: a job stranded in RQ's intermediate list
goes back to the queue and finishes."""

from __future__ import annotations

import pickle
import time

from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.status import job_status
from tests.helpers import WorkerProcess, wait_for

FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}


def test_a_pickled_job_in_the_failed_registry_does_not_stop_the_sweep(conn, settings, store, env):
    queue = settings.queue
    pickled = f"{queue}-pickled"
    conn.hset(
        f"rq:job:{pickled}",
        mapping={
            "data": pickle.dumps(("os.system", None, ("true",), {})),
            "status": "failed",
            "origin": queue,
            "meta": pickle.dumps({}),
        },
    )
    conn.zadd(f"rq:failed:{queue}", {pickled: time.time() + 3600})
    stranded = enqueue(conn, queue, {"prompt": "p", "simulate": ["ok"]}).job.id
    conn.lrem(f"rq:queue:{queue}", 0, stranded)  # popped by a worker that died before starting it
    conn.rpush(f"rq:queue:{queue}:intermediate", stranded)
    worker = WorkerProcess(dict(env, **FAST), queue)
    try:
        wait_for(
            lambda: job_status(conn, store, stranded)["status"] == "finished",
            timeout=60,
            message="the stranded job to be requeued by the sweep and finish",
        )
        log = worker.log()
    finally:
        worker.stop()
    assert log.count("sweep.unreadable_skipped") == 1, log[-3000:]
    assert "heartbeat.task_failed" not in log and "sweep.step_failed" not in log
    assert conn.zscore(f"rq:failed:{queue}", pickled) is not None  # left for an admin, untouched
    assert worker.proc.returncode is not None
