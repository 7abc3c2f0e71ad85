"""A job's event stream, written by its moves: the events of a job that is enqueued, fails, retries, parks,
wakes and finishes, in order, each with an increasing id; cancel and replay events. Real workers, real server."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from genqueue.backend import keys
from genqueue.jobs.cancel import cancel_job
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.events import read
from genqueue.jobs.status import job_status
from tests.helpers import run_cli, wait_for

TASKS = """
import os
import time

import redis

import genqueue
from genqueue import TransientError

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


@genqueue.task(limit_key="ev-TAG", limits={"concurrency": 1}, policy={"TRANSIENT": {"max": 3, "base": 0.05}})
def flaky(run: str, hold: float = 0) -> str:
    ctx = genqueue.current()
    ctx.progress(0.5, "half")
    if hold:
        end = time.monotonic() + hold
        while time.monotonic() < end and not R.exists(run + ":go"):
            time.sleep(0.02)
    if ctx.attempt == 1 and not hold:
        raise TransientError("503 upstream busy")
    return {"url": "https://cdn.example/x.png"}


@genqueue.task(max_retries=0)
def broken(run: str) -> str:
    raise genqueue.PermanentError("bad prompt")
"""


@pytest.fixture
def lab(tmp_path, env, server):
    tag = uuid.uuid4().hex[:8]
    name = f"evtasks_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    return name


def names(conn, job_id):
    return [e.event for e in read(conn, job_id)]


def test_retry_park_wake_finish_in_order_with_increasing_ids(conn, settings, store, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    holder = enqueue_task(conn, settings.queue, f"{lab}.flaky", {"run": run, "hold": 30}, check=False).job.id
    workers(extra=("--concurrency", "2", "--tasks", lab))
    wait_for(lambda: "started" in names(conn, holder), message="the holder to start")
    job_id = enqueue_task(conn, settings.queue, f"{lab}.flaky", {"run": run}, check=False).job.id
    wait_for(lambda: "parked" in names(conn, job_id), message="the job to park behind the holder")
    conn.set(f"{run}:go", 1)
    wait_for(lambda: job_status(conn, store, job_id)["status"] == "finished", message="the job to finish")
    events = read(conn, job_id)
    seen = [e.event for e in events]
    # parked, then woken; its first attempt fails (TRANSIENT): a retry; the second finishes. A retry may
    # park again behind the holder's slot release races, so only the order of the milestones is fixed.
    milestones = [e for e in seen if e in ("enqueued", "started", "retry_scheduled", "finished")]
    assert milestones == ["enqueued", "started", "retry_scheduled", "started", "finished"], seen
    assert seen.index("parked") < seen.index("woken") < seen.index("started"), seen
    assert "progress" in seen
    ids = [tuple(map(int, e.id.split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e.job_id == job_id and e.at for e in events)
    by_name = {e.event: e for e in events}
    assert by_name["retry_scheduled"].data["kind"] == "TRANSIENT"
    assert by_name["parked"].data["key"].startswith("ev-")
    assert by_name["finished"].data["result"] == {"url": "https://cdn.example/x.png"}
    assert by_name["started"].data["attempt"] == 2
    assert 0 < conn.ttl(keys.events(job_id)) <= 7 * 24 * 3600


def test_dead_letter_replay_and_cancel_events(conn, settings, store, env, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    job_id = enqueue_task(conn, settings.queue, f"{lab}.broken", {"run": run}, check=False).job.id
    workers(extra=("--tasks", lab))
    wait_for(lambda: store.exists(job_id), message="the job to be dead-lettered")
    assert names(conn, job_id) == ["enqueued", "started", "dead_lettered"]
    assert read(conn, job_id)[-1].data["reason"]
    r = run_cli(env, "dlq", "retry", job_id, "--force")
    assert r.code == 0, r.stderr
    wait_for(lambda: names(conn, job_id)[-1] == "dead_lettered" and len(names(conn, job_id)) == 6, message="again")
    assert names(conn, job_id)[3] == "replayed"
    queued = enqueue_task(conn, settings.queue, f"{lab}.flaky", {"run": run, "hold": 30}, in_=None, check=False).job.id
    later = enqueue_task(conn, settings.queue, f"{lab}.broken", {"run": run}, job_id=f"c-{run}", check=False).job.id
    cancel_job(conn, store, later, by="me", reason="no")
    assert names(conn, later)[-1] == "canceled"
    assert read(conn, later)[-1].data == {"by": "me", "reason": "no", "was": "queued"}
    assert queued
