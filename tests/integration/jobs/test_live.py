"""Live status without polling: SSE from a real `genqueue api` process read with httpx (a reconnect with
Last-Event-ID loses nothing), `genqueue jobs watch`, and `EnqueueResult.wait`. Real workers, real server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import httpx
import pytest

import genqueue
from genqueue.jobs.cancel import cancel_job
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.events import JobDeadLettered, read
from tests.helpers import run_cli, wait_for

TASKS = '''
import os
import time

import redis

import genqueue
from genqueue import TransientError

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


@genqueue.task(policy={"TRANSIENT": {"max": 3, "base": 0.05}})
def gated(run: str, fail_first: bool = True) -> dict:
    """Progress, then waits for the test's go (so a client can connect mid-way), fails once, then finishes."""
    ctx = genqueue.current()
    for i in range(1, 4):
        ctx.progress(i / 4, f"step {i}/4")
        time.sleep(0.3)
    while not R.exists(run + ":go"):
        time.sleep(0.02)
    if fail_first and ctx.attempt == 1:
        raise TransientError("503 busy")
    return {"url": "https://cdn.example/" + run}


@genqueue.task(max_retries=0)
def broken(run: str) -> str:
    raise genqueue.PermanentError("bad prompt")
'''


@pytest.fixture
def lab(tmp_path, env, server):
    name = f"livetasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    return name


def sse_events(response, stop_after: int | None = None):
    """(id, event, data) per SSE message, comments skipped; stops after `stop_after` messages if given."""
    out, current = [], {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                out.append((current["id"], current["event"], json.loads(current["data"])))
                current = {}
                if stop_after is not None and len(out) >= stop_after:
                    break
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return out


def test_sse_stream_in_order_with_a_reconnect_losing_nothing(api_process, token, conn, settings, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=("--tasks", lab))
    api = api_process()
    job_id = enqueue_task(conn, settings.queue, f"{lab}.gated", {"run": run}, check=False).job.id
    headers = token(admin=True)
    url = f"{api.url}/api/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = sse_events(r, stop_after=3)  # enqueued, started, the first progress: then the client drops
    assert [e for _, e, _ in first][:2] == ["enqueued", "started"]
    conn.set(f"{run}:go", 1)  # the job goes on while nobody listens: fails once, retries, finishes
    wait_for(lambda: any(e.event == "finished" for e in read(conn, job_id)), message="the job to finish")
    with httpx.stream("GET", url, headers={**headers, "Last-Event-ID": first[-1][0]}, timeout=30) as r:
        rest = sse_events(r)  # the stream ends by itself after the terminal event
    got = first + rest
    stored = read(conn, job_id)
    assert [i for i, _, _ in got] == [e.id for e in stored]  # every event once, in order, nothing lost
    names = [e for _, e, _ in got]
    assert names[-1] == "finished" and "retry_scheduled" in names and names.count("started") == 2
    assert got[-1][2]["data"]["result"] == {"url": f"https://cdn.example/{run}"}
    assert all(d["job_id"] == job_id and d["at"] and d["id"] == i for i, _, d in got)
    # Tenants: another tenant's job is not theirs to watch; bad cursors are 400, unknown jobs 404.
    other = httpx.get(url, headers=token(tenant="someone-else"), timeout=10)
    assert other.status_code in (403, 404)
    bad = httpx.get(url, headers={**headers, "Last-Event-ID": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    assert httpx.get(f"{api.url}/api/jobs/nope/events", headers=headers, timeout=10).status_code == 404


def test_sse_live_while_it_runs_and_a_run_stream(api_process, token, conn, settings, lab, workers, env, tmp_path):
    run = f"run-{uuid.uuid4().hex[:8]}"
    run_id = f"r{uuid.uuid4().hex[:8]}"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"run": run, "fail_first": False}) + "\n" for _ in range(3)))
    r = run_cli(env, "runs", "submit", str(path), "--run-id", run_id, "--task", f"{lab}.gated", "--tasks", lab)
    assert r.code == 0, r.stderr
    workers(extra=("--concurrency", "3", "--tasks", lab))
    api = api_process()
    conn.set(f"{run}:go", 1)
    with httpx.stream("GET", f"{api.url}/api/runs/{run_id}/events", headers=token(admin=True), timeout=60) as r:
        assert r.status_code == 200
        got = sse_events(r)  # ends once every item has ended
    finished = {d["job_id"] for _, e, d in got if e == "finished"}
    assert finished == {f"{run_id}-item-{i}" for i in range(3)}
    assert any(e == "progress" for _, e, _ in got)


def test_watch_prints_events_live_and_exits_with_the_outcome(conn, settings, store, env, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=("--tasks", lab))
    job_id = enqueue_task(conn, settings.queue, f"{lab}.gated", {"run": run}, check=False).job.id
    watcher = subprocess.Popen(
        [sys.executable, "-m", "genqueue", "jobs", "watch", job_id], env=env, stdout=subprocess.PIPE, text=True
    )
    wait_for(lambda: any(e.event == "progress" for e in read(conn, job_id)), message="the job to report progress")
    conn.set(f"{run}:go", 1)
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, out
    lines = out.splitlines()
    assert "enqueued" in lines[0] and "finished" in lines[-1] and any("retry_scheduled" in x for x in lines)
    dead = enqueue_task(conn, settings.queue, f"{lab}.broken", {"run": run}, check=False).job.id
    r = run_cli(env, "jobs", "watch", dead, "--json", "--timeout", "60")
    assert r.code == 1 and json.loads(r.stdout.splitlines()[-1])["event"] == "dead_lettered"
    r = run_cli(env, "jobs", "watch", "no-such-job")
    assert r.code == 3 and r.stderr.count("\n") == 1


def test_wait_returns_the_result_or_raises_the_outcome(conn, settings, store, lab, workers):
    run = f"run-{uuid.uuid4().hex[:8]}"
    workers(extra=("--concurrency", "2", "--tasks", lab))
    handle = enqueue_task(conn, settings.queue, f"{lab}.gated", {"run": run}, check=False)
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.5)
    conn.set(f"{run}:go", 1)
    assert handle.wait(timeout=60) == {"url": f"https://cdn.example/{run}"}
    assert handle.wait(timeout=1) == {"url": f"https://cdn.example/{run}"}  # ended: at once
    with pytest.raises(JobDeadLettered) as dead:
        enqueue_task(conn, settings.queue, f"{lab}.broken", {"run": run}, check=False).wait(timeout=60)
    assert dead.value.reason
    later = enqueue_task(conn, settings.queue, f"{lab}.gated", {"run": run}, in_=timedelta(hours=1), check=False)
    cancel_job(conn, store, later.id, by="me", reason="changed my mind")
    with pytest.raises(genqueue.JobCanceled, match="changed my mind"):
        later.wait(timeout=10)


def test_idle_stream_sends_keep_alives_and_streams_are_bounded_per_caller(
    client, token, conn, settings, lab, monkeypatch
):
    from genqueue.api.routes import events as routes

    monkeypatch.setattr(routes, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(routes, "MAX_STREAMS_PER_PRINCIPAL", 1)
    job_id = enqueue_task(
        conn, settings.queue, f"{lab}.gated", {"run": "idle"}, check=False
    ).job.id  # no worker: stays queued
    headers = token("bounded", tenant=None, admin=True)
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200
        lines, it = [], r.iter_lines()
        for line in it:
            lines.append(line)
            if line.startswith(": keep-alive"):
                break
        assert lines[0].startswith("id: ") and "event: enqueued" in lines
        second = client.get(f"/api/jobs/{job_id}/events", headers=headers)
        assert second.status_code == 429 and second.json()["error"]["code"] == "TOO_MANY_STREAMS"
        cancel_job(conn, None, job_id, by="test")  # the stream's terminal event ends it
        rest = list(it)
    assert "event: canceled" in rest
    wait_for(lambda: routes._open.get("bounded", 0) == 0, timeout=10, message="the stream's slot to come back")
