"""Cancel by filter (admins): a mix of 200 jobs of two tenants and two tasks — queued in the fair lanes,
scheduled, one running on a real forking worker — canceled by tenant: the dry run's count, then a real run
interrupted (SIGINT) and resumed with its cursor; every matching job canceled exactly once, the others
untouched. The HTTP face: admin only, dry run, bounded calls resumed by next_cursor. The parked place and the
limit-key filter. Real worker and CLI processes, real server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import pytest

from genqueue.backend import keys
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import run_cli, wait_for

TASKS = """
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


@genqueue.task
def paint(run: str) -> str:
    R.rpush(f"{run}:started", genqueue.current().job_id)
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    return "stopped"


@genqueue.task
def sing(run: str) -> str:
    R.rpush(f"{run}:started", genqueue.current().job_id)
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    return "stopped"


@genqueue.task(limit_key="bulk-lab-TAG", limits={"concurrency": 1})
def capped(run: str) -> str:
    R.rpush(f"{run}:started", genqueue.current().job_id)
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    return "stopped"
"""


@pytest.fixture
def lab(tmp_path, env, server):
    tag = uuid.uuid4().hex[:8]
    name = f"bulkcancel_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    env["GENQUEUE_CANCEL_GRACE"] = "1"
    return name, tag


@pytest.fixture
def run():
    return f"run-{uuid.uuid4().hex[:8]}"


def mix(conn, queue, lab, run, n=200) -> dict[str, list[str]]:
    """n jobs: tenants acme/globex alternating, tasks paint/sing by pairs, every fourth pair scheduled in 1 h."""
    made: dict[str, list[str]] = {"acme": [], "globex": []}
    for i in range(n):
        tenant = "acme" if i % 2 == 0 else "globex"
        task = "paint" if i % 4 < 2 else "sing"
        options = {"in_": timedelta(hours=1)} if i % 8 >= 6 else {}
        job = enqueue_task(conn, queue, f"{lab}.{task}", {"run": run}, tenant=tenant, check=False, **options).job
        made[tenant].append(job.id)
    return made


def canceled_events(conn, job_id) -> int:
    return sum(1 for _, f in conn.xrange(keys.events(job_id)) if f[b"e"] == b"canceled")


def history_cancels(conn, store, job_id) -> int:
    return sum(1 for h in job_status(conn, store, job_id)["history"] if h.get("action") == "canceled")


def test_cancel_by_tenant_dry_run_then_interrupted_and_resumed(conn, settings, store, env, lab, run, workers):
    name, _ = lab
    made = mix(conn, settings.queue, name, run)
    workers(extra=("--tasks", name))
    wait_for(lambda: conn.llen(f"{run}:started") >= 1, timeout=60, message="a job to start")

    r = run_cli(env, "jobs", "cancel", "--tenant", "acme", "--dry-run", "--json")
    assert r.code == 0, r.stderr
    dry = r.json()
    assert dry["matching"] == 100, dry
    assert dry["by_place"]["scheduled"] == 25 and dry["by_place"]["parked"] == 0
    assert dry["by_place"]["queued"] + dry["by_place"]["running"] == 75
    assert all(job_status(conn, store, j)["status"] != "canceled" for j in made["acme"])  # a dry run changes nothing

    # The real run, slowed down and interrupted midway: what it did stays done, the cursor resumes the rest.
    proc = subprocess.Popen(
        [sys.executable, "-m", "genqueue", "jobs", "cancel", "--tenant", "acme", "--rate", "20", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: sum(job_status(conn, store, j)["status"] == "canceled" for j in made["acme"][::5]) >= 5,
            timeout=60,
            message="the run to cancel some jobs",
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode != 0
    cursor = re.search(r"--cursor (\S+)", err)
    assert cursor is not None, err
    left = [j for j in made["acme"] if job_status(conn, store, j)["status"] != "canceled"]
    assert 0 < len(left) < 100, "the interrupted run did part of the work"

    r = run_cli(env, "jobs", "cancel", "--tenant", "acme", "--cursor", cursor.group(1), "--yes", "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["finished"] == 0 and out["missing"] == 0, out

    wait_for(
        lambda: all(job_status(conn, store, j)["status"] == "canceled" for j in made["acme"]),
        timeout=90,
        message="every acme job to be canceled",
    )
    for job_id in made["acme"]:
        assert canceled_events(conn, job_id) == 1, job_id
        assert history_cancels(conn, store, job_id) <= 1
    assert int(conn.hget(keys.metrics(settings.queue), "canceled")) == 100
    for job_id in made["globex"]:  # untouched: still waiting, scheduled or running
        info = job_status(conn, store, job_id)
        assert info["status"] in ("queued", "scheduled", "running", "started"), info["status"]
        assert canceled_events(conn, job_id) == 0
        assert not conn.exists(keys.cancel_request(job_id))
    # Running it again finds nothing left of acme's.
    r = run_cli(env, "jobs", "cancel", "--tenant", "acme", "--dry-run", "--json")
    assert r.json()["matching"] == 0


def test_cancel_by_filter_usage_errors(env, lab):
    r = run_cli(env, "jobs", "cancel")
    assert r.code == 2 and r.stderr.count("\n") == 1, r.stderr
    r = run_cli(env, "jobs", "cancel", "fox-1", "--tenant", "acme")
    assert r.code == 2 and "not both" in r.stderr
    r = run_cli(env, "jobs", "cancel", "--tenant", "acme", "--json")  # not a terminal, no --yes: refused
    assert r.code != 0


def test_http_cancel_by_filter_admin_only_dry_run_and_cursor(client, token, conn, settings, store, lab, run):
    name, _ = lab
    made = mix(conn, settings.queue, name, run, n=40)
    body = {"tenant": "globex", "task": f"{name}.sing"}
    r = client.post("/api/jobs/cancel", json={**body, "dry_run": True}, headers=token(tenant="globex"))
    assert r.status_code == 403 and r.json()["error"]["code"]
    r = client.post("/api/jobs/cancel", json={**body, "dry_run": True}, headers=token(admin=True))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["matching"] == 10
    r = client.post("/api/jobs/cancel", json={}, headers=token(admin=True))
    assert r.status_code in (400, 422)
    first = client.post("/api/jobs/cancel", json={**body, "limit": 4}, headers=token(admin=True)).json()["data"]
    assert first["canceled"] == 4 and first["next_cursor"]
    rest = client.post(
        "/api/jobs/cancel", json={**body, "cursor": first["next_cursor"]}, headers=token(admin=True)
    ).json()["data"]
    assert rest["canceled"] == 6 and rest["next_cursor"] is None
    assert sorted(first["ids"] + rest["ids"]) == sorted(j for i, j in enumerate(made["globex"]) if (2 * i + 1) % 4 >= 2)
    for job_id in made["acme"]:
        assert job_status(conn, store, job_id)["status"] != "canceled"


def test_parked_jobs_canceled_by_limit_key(conn, settings, store, env, lab, run, workers):
    name, tag = lab
    holder = enqueue_task(conn, settings.queue, f"{name}.capped", {"run": run}, check=False).job.id
    parked = enqueue_task(conn, settings.queue, f"{name}.capped", {"run": run}, check=False).job.id
    other = enqueue_task(conn, settings.queue, f"{name}.paint", {"run": run}, in_=timedelta(hours=1), check=False)
    workers(extra=("--concurrency", "2", "--tasks", name))
    wait_for(lambda: job_status(conn, store, parked)["status"] == "parked", timeout=90, message="a job to park")
    r = run_cli(env, "jobs", "cancel", "--limit-key", f"bulk-lab-{tag}", "--dry-run", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["by_place"] == {"queued": 0, "scheduled": 0, "parked": 1, "running": 1}
    r = run_cli(env, "jobs", "cancel", "--limit-key", f"bulk-lab-{tag}", "--yes", "--json")
    assert r.code == 0, r.stderr
    assert (r.json()["canceled"], r.json()["stopping"]) == (1, 1)
    wait_for(
        lambda: {job_status(conn, store, j)["status"] for j in (holder, parked)} == {"canceled"},
        timeout=60,
        message="both capped jobs to be canceled",
    )
    assert job_status(conn, store, other.job.id)["status"] == "scheduled"
    assert int(conn.hget(keys.PARKED, settings.queue) or 0) == 0
