"""Enqueue by name knows the names: workers publish the tasks they registered, and a producer that cannot
import them (CLI, HTTP, enqueue_task) checks the name and kwargs against that catalogue, refuses an unknown
name listing the known ones, and applies the task's declared options (its timeout). Real worker processes."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from genqueue.backend.queues import fetch_job
from genqueue.errors import InvalidInput, UnknownTaskName
from genqueue.jobs.enqueue import enqueue_task
from tests.helpers import WorkerProcess, run_cli, wait_for

TASKS = """
import time

import genqueue


@genqueue.task(timeout=2, max_retries=0, policy={"TIMEOUT": {"max": 0}})
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@genqueue.task(limit_key="prov:{model}")
def keyed(model: str) -> str:
    return model
"""


@pytest.fixture
def published(env, tmp_path, settings):
    """A worker running a task module that the producers here cannot import."""
    module = f"cattasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS))
    worker_env = dict(env, PYTHONPATH=f"{tmp_path}:{env['PYTHONPATH']}")
    worker = WorkerProcess(worker_env, settings.queue, extra=("--tasks", module))

    def listed():
        r = run_cli(env, "tasks", "--json")
        return r.code == 0 and f"{module}.slow" in [t["name"] for t in r.json()["tasks"]] and r.json()

    try:
        yield module, wait_for(listed, message="the worker's tasks to be published")
    finally:
        worker.stop()


def test_enqueue_by_name_is_checked_against_the_live_workers_tasks(env, conn, settings, published):
    module, catalogue = published
    [row] = [t for t in catalogue["tasks"] if t["name"] == f"{module}.slow"]
    assert row["timeout"] == 2 and row["max_retries"] == 0
    unknown = run_cli(env, "enqueue", f"{module}.nosuch", "--kwargs", '{"m": 1}')
    assert unknown.code == 2 and f"{module}.slow" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = run_cli(env, "enqueue", f"{module}.slow", "--kwargs", '{"secs": 1}')
    assert bad.code == 2 and "arguments for task" in bad.stderr
    assert conn.llen(f"rq:queue:{settings.queue}") == 0  # nothing stored for either
    with pytest.raises(UnknownTaskName, match=f"{module}.slow"):
        enqueue_task(conn, settings.queue, f"{module}.nosuch", {})
    with pytest.raises(InvalidInput, match="arguments"):
        enqueue_task(conn, settings.queue, f"{module}.slow", {"secs": 1})
    ahead = run_cli(env, "enqueue", f"{module}.later", "--kwargs", "{}", "--no-check", "--json", "--queue", "elsewhere")
    assert ahead.code == 0 and ahead.json()["created"]
    fetch_job(conn, ahead.json()["id"]).delete()


def test_a_job_enqueued_by_name_runs_with_its_declared_timeout(env, conn, settings, store, published):
    module, _ = published
    r = run_cli(env, "enqueue", f"{module}.slow", "--kwargs", json.dumps({"seconds": 25}), "--json")
    assert r.code == 0, r.stderr
    job_id = r.json()["id"]
    assert fetch_job(conn, job_id).timeout == 2  # declared by the task, known from the catalogue
    entry = wait_for(lambda: store.exists(job_id) and store.get(job_id), timeout=20, message="the timed-out job")
    assert entry["error"]["kind"] == "TIMEOUT"


def test_a_published_tasks_limit_key_is_checked_at_enqueue_and_in_runs(env, conn, settings, tmp_path, published):
    module, _ = published
    r = run_cli(env, "enqueue", f"{module}.keyed", "--kwargs", json.dumps({"model": "gpt 4o"}))
    assert r.code == 2 and "limit key" in r.stderr and "Traceback" not in r.stderr
    lines = tmp_path / "run.jsonl"
    lines.write_text(json.dumps({"model": "ok-1"}) + "\n" + json.dumps({"model": "x" * 250}) + "\n")
    r = run_cli(env, "runs", "submit", str(lines), "--task", f"{module}.keyed")
    assert r.code == 2 and "limit key" in r.stderr and "Traceback" not in r.stderr
    assert conn.llen(f"rq:queue:{settings.queue}") == 0
