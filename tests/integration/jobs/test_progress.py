"""Progress from a running task, through every face: `jobs show`, `GET /api/jobs/{id}`; sync and async tasks
on forking and concurrent workers. Real worker processes, real server."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import run_cli, wait_for

TASKS = """
import asyncio
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


@genqueue.task
def steps(run: str, n: int = 60) -> str:
    ctx = genqueue.current()
    for i in range(1, n + 1):
        ctx.progress(i / n, f"step {i}/{n}", {"preview": f"https://cdn.example/{i}.png", "api_key": "sk-secret"})
        if i == n // 2:
            R.rpush(run + ":half", ctx.job_id)
            while not R.exists(run + ":go"):  # the test reads the progress mid-run, then lets it go
                time.sleep(0.02)
    return "done"


@genqueue.task
async def steps_async(run: str, n: int = 10) -> str:
    ctx = genqueue.current()
    for i in range(1, n + 1):
        ctx.progress(i / n, f"step {i}/{n}")
        await asyncio.sleep(0)
    return "done"
"""


@pytest.fixture
def lab(tmp_path, env, server):
    name = f"progtasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    return name


@pytest.mark.parametrize("extra", [(), ("--concurrency", "2")], ids=["fork", "concurrent"])
def test_progress_is_shown_while_running_and_its_last_value_kept(
    client, token, conn, settings, store, env, lab, workers, extra
):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=(*extra, "--tasks", lab))
    job_id = enqueue_task(conn, settings.queue, f"{lab}.steps", {"run": run}, check=False).job.id
    wait_for(lambda: conn.llen(f"{run}:half"), message="the task to be half-way")
    mid = job_status(conn, store, job_id)["progress"]  # some value up to half-way (the throttle may hold one)
    assert mid is not None and 0 < mid["fraction"] <= 0.5 and mid["message"].startswith("step ")
    assert mid["data"]["api_key"] != "sk-secret"  # masked like results
    r = client.get(f"/api/jobs/{job_id}", headers=token(admin=True))
    assert r.status_code == 200 and r.json()["data"]["progress"]["message"] == mid["message"]
    shown = run_cli(env, "jobs", "show", job_id)
    assert shown.code == 0 and "progress:" in shown.stdout and "%" in shown.stdout
    conn.set(f"{run}:go", 1)
    info = wait_for(
        lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i, message="the job to finish"
    )
    assert (info["progress"]["fraction"], info["progress"]["message"]) == (1.0, "step 60/60")  # the last one


def test_async_task_progress_on_a_concurrent_worker(conn, settings, store, lab, workers):
    workers(extra=("--concurrency", "2", "--tasks", lab))
    job_id = enqueue_task(conn, settings.queue, f"{lab}.steps_async", {"run": "r"}, check=False).job.id
    info = wait_for(
        lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i, message="the job to finish"
    )
    assert (info["progress"]["fraction"], info["progress"]["message"]) == (1.0, "step 10/10")
