"""After real workers (fork and simple) run known outcomes, one of them SIGKILLed mid-job, every counter
of /metrics equals what the DLQ, the registries and the jobs' histories say."""

from __future__ import annotations

from collections import Counter

import pytest

from genqueue.backend.queues import SERIALIZER
from genqueue.jobs.enqueue import enqueue
from tests.api.test_metrics import samples
from tests.helpers import WorkerProcess, wait_for

OUTCOMES = [
    ["ok"],
    ["ok"],
    ["500", "ok"],
    ["429:retry_after=0.05", "ok"],
    ["401"],
    ["422"],
    ["503", "503"],
    ["crash", "ok"],
]
FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_counters_equal_what_happened(client, conn, settings, store, env, simple):
    from rq.job import Job

    q = settings.queue
    ids = [
        enqueue(conn, q, {"prompt": f"p{i}", "simulate": o}, max_retries=1).job.id
        for i, o in enumerate(OUTCOMES if not simple else [o for o in OUTCOMES if o[0] != "crash"])
    ]
    victim = WorkerProcess(dict(env, **FAST), q, simple=simple)
    slow = enqueue(conn, q, {"prompt": "slow", "simulate": ["sleep=20", "ok"]}).job.id
    ids.append(slow)
    wait_for(lambda: conn.hget(f"rq:job:{slow}", "status") == b"started", message="the slow job to start")
    victim.kill()
    victim.stop()
    worker = WorkerProcess(dict(env, **FAST), q, simple=simple)
    try:

        def settled():
            statuses = [conn.hget(f"rq:job:{i}", "status") for i in ids]
            return all(s == b"finished" or (s is None and store.exists(i)) for s, i in zip(statuses, ids, strict=False))

        wait_for(settled, timeout=90, interval=0.2, message="every job finished or dead-lettered")
    finally:
        worker.stop()

    histories, finished = [], 0
    for job_id in ids:
        if store.exists(job_id):
            histories.append(store.get(job_id)["history"])
        else:
            job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
            histories.append(job.meta["genqueue"]["history"])
            finished += 1
    attempts = [h for history in histories for h in history]
    failed, retried, dead = Counter(), Counter(), Counter()
    for h in attempts:
        failed[h["kind"]] += 1
        if h["action"] == "retry":
            retried[h["kind"]] += 1
        else:
            dead[(h["kind"], h["reason"])] += 1
    assert failed["CRASH"] >= 1, "the SIGKILL must have abandoned a job"

    m = samples(client.get("/metrics").text)
    label = (("queue", q),)
    assert m[("genqueue_jobs_finished_total", label)] == finished == conn.zcard(f"rq:finished:{q}")
    assert m[("genqueue_jobs_enqueued_total", label)] == len(ids)  # retries, crash retries included, are not new
    got_failed = {
        dict(k[1])["kind"]: v
        for k, v in m.items()
        if k[0] == "genqueue_attempts_failed_total" and dict(k[1])["queue"] == q
    }
    got_retried = {
        dict(k[1])["kind"]: v
        for k, v in m.items()
        if k[0] == "genqueue_retries_scheduled_total" and dict(k[1])["queue"] == q
    }
    got_dead = {
        (dict(k[1])["kind"], dict(k[1])["reason"]): v
        for k, v in m.items()
        if k[0] == "genqueue_dead_lettered_total" and dict(k[1])["queue"] == q
    }
    assert got_failed == dict(failed) and got_retried == dict(retried) and got_dead == dict(dead)
    assert sum(got_dead.values()) == store.count()
    count = m[("genqueue_job_duration_seconds_count", (("outcome", "finished"), ("queue", q)))]
    inf = m[("genqueue_job_duration_seconds_bucket", (("le", "+Inf"), ("outcome", "finished"), ("queue", q)))]
    assert count == inf == finished
    assert m[("genqueue_job_duration_seconds_count", (("outcome", "failed"), ("queue", q)))] == len(attempts)
