"""Your own tasks, end to end: a task module in a temporary directory, real fork and simple workers started
with --tasks, the CLI and HTTP as the producers; and the allow-list (a worker runs registered tasks only)."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.helpers import run_cli, wait_for

TASKS = """
import asyncio
import os

import genqueue
from genqueue import PermanentError, TransientError


@genqueue.task(max_retries=3, api=True)
def flaky(prompt: str, fail_first: int = 1) -> dict:
    ctx = genqueue.current()
    if ctx.attempt <= fail_first:
        raise TransientError(f"provider hiccup on attempt {ctx.attempt}")
    return {"image": f"img:{prompt}", "job_id": ctx.job_id, "attempt": ctx.attempt, "api_key": "sk-result"}


@genqueue.task(name="NAME-async")
async def render(prompt: str, steps: int = 2) -> dict:
    await asyncio.sleep(0.01)
    return {"prompt": prompt, "steps": steps}


@genqueue.task
def picky(prompt: str, fixed: bool = False) -> str:
    if not fixed:
        raise PermanentError("prompt rejected")
    return "fixed " + prompt


@genqueue.task
def huge() -> str:
    return "x" * (2 * 1024 * 1024)
"""


@pytest.fixture
def task_module(tmp_path, env):
    """A task module of its own per test (module names are global to the worker process)."""
    name = f"usertasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("NAME", name)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"  # the CLI checks kwargs against the signatures
    return name


def show(env, job_id):
    r = run_cli(env, "jobs", "show", job_id, "--json")
    return r.json() if r.code == 0 else None


def enqueue(env, module, task, kwargs, *extra):
    r = run_cli(
        env,
        "enqueue",
        f"{module}.{task}" if "." not in task and "-" not in task else task,
        "--kwargs",
        json.dumps(kwargs),
        "--tasks",
        module,
        "--json",
        *extra,
    )
    assert r.code == 0, r.stderr
    return r.json()["id"]


@pytest.mark.parametrize("simple", [False, True], ids=["fork", "simple"])
def test_sync_and_async_tasks_retry_and_finish_with_their_result(env, workers, task_module, simple):
    flaky = enqueue(env, task_module, "flaky", {"prompt": "a fox"})
    rendered = enqueue(env, task_module, f"{task_module}-async", {"prompt": "a whale", "steps": 3})
    workers(simple=simple, extra=("--tasks", task_module))
    done = wait_for(lambda: (s := show(env, flaky)) and s["status"] == "finished" and s, message="flaky to finish")
    assert [h["kind"] for h in done["history"]] == ["TRANSIENT"] and done["type"] == f"{task_module}.flaky"
    assert done["result"]["image"] == "img:a fox" and done["result"]["attempt"] == 2
    assert done["result"]["job_id"] == flaky and done["result"]["api_key"] == "***"  # results are masked
    assert done["payload"] == {"prompt": "a fox"}
    finished = wait_for(lambda: (s := show(env, rendered)) and s["status"] == "finished" and s, message="async")
    assert finished["result"] == {"prompt": "a whale", "steps": 3}


def test_bad_kwargs_are_refused_at_enqueue_and_nothing_is_enqueued(env, task_module, conn, queue_name):
    for kwargs, why in [
        ({"prompt": "p", "promt": "typo"}, "unexpected keyword"),
        ({}, "missing a required argument"),
        ({"prompt": float("nan")}, "must be JSON"),
    ]:
        r = run_cli(env, "enqueue", f"{task_module}.flaky", "--kwargs", json.dumps(kwargs), "--tasks", task_module)
        assert r.code == 2 and why in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert conn.llen(f"rq:queue:{queue_name}") == 0
    r = run_cli(env, "enqueue", f"{task_module}.flaky", "--kwargs", "{}", "--tasks", "no_such_module_here")
    assert r.code == 2 and "cannot import task module" in r.stderr


def test_a_worker_without_the_module_dead_letters_its_jobs_as_unknown_task(env, workers, task_module, store):
    job_id = enqueue(env, task_module, "flaky", {"prompt": "p"})
    workers(simple=True, extra=("--burst",)).proc.wait(60)  # started without --tasks
    entry = wait_for(lambda job_id=job_id: store.exists(job_id) and store.get(job_id), message="unknown_task entry")
    assert entry["reason"] == "unknown_task" and entry["func"] == f"{task_module}.flaky"
    assert entry["kwargs"] == {"prompt": "p"} and entry["error"]["kind"] == "PERMANENT"


def test_replay_with_a_kwargs_patch_and_results_over_a_mib_are_refused(env, workers, task_module, store):
    picky = enqueue(env, task_module, "picky", {"prompt": "cat"})
    huge = enqueue(env, task_module, "huge", {})
    workers(extra=("--tasks", task_module))
    wait_for(lambda: store.exists(picky) and store.exists(huge), message="both dead-lettered")
    assert "over the 1,048,576-byte limit" in store.get(huge)["error"]["message"]
    r = run_cli(env, "dlq", "retry", picky, "--payload-patch", '{"fixed": true}', "--yes")
    assert r.code == 0, r.stderr
    done = wait_for(lambda: (s := show(env, picky)) and s["status"] == "finished" and s, message="replayed picky")
    assert done["result"] == "fixed cat" and done["payload"] == {"prompt": "cat", "fixed": True}


def test_a_run_of_a_task_and_continue(env, workers, task_module, tmp_path):
    lines = tmp_path / "items.jsonl"
    lines.write_text("\n".join(json.dumps(k) for k in [{"prompt": "a"}, {"prompt": "b", "fixed": True}]))
    run_id = f"tr-{uuid.uuid4().hex[:8]}"
    r = run_cli(
        env,
        "runs",
        "submit",
        str(lines),
        "--run-id",
        run_id,
        "--task",
        f"{task_module}.picky",
        "--tasks",
        task_module,
        "--json",
    )
    assert r.code == 0, r.stderr
    workers(simple=True, extra=("--tasks", task_module))
    snap = wait_for(
        lambda: (s := run_cli(env, "runs", "show", run_id, "--json").json())["status"] != "running" and s,
        message="the run to stop",
    )
    assert snap["counts"] == {"finished": 1, "dead": 1}
    assert [f["retry"] for f in snap["failed_items"]] == ["never"]  # PERMANENT: Continue will not retry it
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"nope": 1}\n')
    r = run_cli(env, "runs", "submit", str(bad), "--task", f"{task_module}.picky", "--tasks", task_module)
    assert r.code == 2 and "line 2" in r.stderr


def test_workers_never_run_an_unregistered_function(env, workers, conn, queue_name, store, tmp_path):
    """rq/rq#2191: a plain RQ client can name any importable function. `os.system` and a pickled job are
    dead-lettered as unknown_task; neither is imported or called."""
    marker = tmp_path / "pwned.txt"
    q = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    q.enqueue("os.system", f"echo PWNED > {marker}", job_id=f"inject-{queue_name}")
    Queue(queue_name, connection=conn).enqueue("os.system", f"echo PWNED > {marker}", job_id=f"pickled-{queue_name}")
    workers(simple=True, extra=("--burst",)).proc.wait(60)
    workers(extra=("--burst",)).proc.wait(60)
    for job_id in (f"inject-{queue_name}", f"pickled-{queue_name}"):
        entry = wait_for(
            lambda job_id=job_id: store.exists(job_id) and store.get(job_id), message=f"{job_id} dead-lettered"
        )
        assert entry["reason"] == "unknown_task" and entry["error"]["kind"] == "PERMANENT"
    assert store.get(f"inject-{queue_name}")["func"] == "os.system"
    assert not marker.exists()
    assert not Job.exists(f"inject-{queue_name}", connection=conn)
