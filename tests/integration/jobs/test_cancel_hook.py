"""A task's on_cancel hook (worker/cancel_hook.py): run exactly once when a running job of it is canceled —
on a forking and a concurrent worker, for a task that stops by itself and one the worker must stop, declared
as an option or with the task's `on_cancel` decorator — with the job's kwargs, who, why and last progress; a
hook that raises is logged and the worker goes on; a job canceled before it ran calls no hook. Real worker
processes, real server."""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import timedelta

import pytest

from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import run_cli, wait_for

TASKS = """
import json
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


def record(job: genqueue.CanceledJob) -> None:
    R.rpush(f"{job.kwargs['run']}:hook", json.dumps(
        {"id": job.job_id, "task": job.task, "by": job.by, "reason": job.reason, "progress": job.progress}
    ))


def broken(job):
    R.rpush(f"{job.kwargs['run']}:hook", json.dumps({"id": job.job_id}))
    raise RuntimeError("the provider said no")


@genqueue.task(on_cancel=record)
def polite(run: str) -> str:
    genqueue.current().progress(0.5, data={"prediction": "p-42"})
    R.rpush(f"{run}:started", genqueue.current().job_id)
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    return "stopped early"


@genqueue.task
def stubborn(run: str) -> str:
    genqueue.current().progress(0.5, data={"prediction": "p-42"})
    R.rpush(f"{run}:started", genqueue.current().job_id)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(0.02)
    return "done"


@stubborn.on_cancel
def stubborn_hook(job: genqueue.CanceledJob) -> None:
    record(job)


@genqueue.task(on_cancel=broken)
def fragile(run: str) -> str:
    R.rpush(f"{run}:started", genqueue.current().job_id)
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    return "stopped"


@genqueue.task
def quick(run: str) -> str:
    return "ok"
"""


@pytest.fixture
def lab(tmp_path, env, server):
    name = f"cancelhook_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    env["GENQUEUE_CANCEL_GRACE"] = "1"
    return name


@pytest.fixture
def run():
    return f"run-{uuid.uuid4().hex[:8]}"


def put(conn, queue, task, run, **options):
    return enqueue_task(conn, queue, task, {"run": run}, check=False, **options).job.id


@pytest.mark.parametrize(
    ("mode", "task"),
    [("fork", "polite"), ("fork", "stubborn"), ("concurrent", "polite"), ("concurrent", "stubborn")],
)
def test_on_cancel_runs_exactly_once_for_a_canceled_running_job(
    conn, settings, store, env, lab, run, workers, mode, task
):
    extra = {"fork": (), "concurrent": ("--concurrency", "4")}[mode]
    workers(extra=(*extra, "--tasks", lab))
    job_id = put(conn, settings.queue, f"{lab}.{task}", run, timeout=120)
    wait_for(lambda: conn.llen(f"{run}:started") == 1, timeout=60, message="the task to start")
    r = run_cli(env, "jobs", "cancel", job_id, "--reason", "user left", "--json")
    assert r.code == 0 and r.json()["stopping"] is True, r.stderr
    wait_for(lambda: job_status(conn, store, job_id)["status"] == "canceled", timeout=60, message="the cancel")
    wait_for(lambda: conn.llen(f"{run}:hook") >= 1, timeout=30, message="the hook to run")
    # The worker goes on with the next job; by then both places that may run the hook have had their turn.
    after = put(conn, settings.queue, f"{lab}.quick", run)
    wait_for(lambda: job_status(conn, store, after)["status"] == "finished", timeout=60, message="the next job")
    calls = [json.loads(c) for c in conn.lrange(f"{run}:hook", 0, -1)]
    assert len(calls) == 1, calls
    [call] = calls
    assert call["id"] == job_id and call["task"] == f"{lab}.{task}" and call["reason"] == "user left"
    assert call["by"] and call["progress"]["data"] == {"prediction": "p-42"}


def test_a_failing_hook_is_logged_and_the_worker_goes_on(conn, settings, store, env, lab, run, workers):
    worker = workers(extra=("--tasks", lab))
    job_id = put(conn, settings.queue, f"{lab}.fragile", run, timeout=120)
    wait_for(lambda: conn.llen(f"{run}:started") == 1, timeout=60, message="the task to start")
    assert run_cli(env, "jobs", "cancel", job_id).code == 0
    wait_for(lambda: job_status(conn, store, job_id)["status"] == "canceled", timeout=60, message="the cancel")
    after = put(conn, settings.queue, f"{lab}.quick", run)
    wait_for(lambda: job_status(conn, store, after)["status"] == "finished", timeout=60, message="the next job")
    assert conn.llen(f"{run}:hook") == 1
    assert worker.alive()
    wait_for(lambda: "job.on_cancel_failed" in worker.log(), timeout=30, message="the hook's failure logged")
    assert "the provider said no" in worker.log()


def test_no_hook_for_a_job_canceled_before_it_ran(conn, settings, store, env, lab, run, workers):
    job_id = put(conn, settings.queue, f"{lab}.polite", run, in_=timedelta(hours=1))
    assert run_cli(env, "jobs", "cancel", job_id).code == 0
    workers(extra=("--tasks", lab))
    after = put(conn, settings.queue, f"{lab}.quick", run)
    wait_for(lambda: job_status(conn, store, after)["status"] == "finished", timeout=60, message="the next job")
    assert conn.llen(f"{run}:hook") == 0
