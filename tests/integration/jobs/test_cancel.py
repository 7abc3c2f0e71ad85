"""Cancel: queued, scheduled and parked jobs at once (one atomic move, out of every list); running jobs on a
forking, a simple and a concurrent worker (sync and async) stopped and landed in `canceled` once; a cancel
racing a success has exactly one outcome, the one its answer named. Real worker processes, real server."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from datetime import timedelta

import pytest

from genqueue.backend import keys
from genqueue.errors import Conflict
from genqueue.jobs.cancel import cancel_job
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import run_cli, wait_for

TASKS = '''
import asyncio
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])


def mark(run, what):
    R.rpush(f"{run}:{what}", genqueue.current().job_id)


@genqueue.task
def polite(run: str) -> str:
    """Checks `cancelled` and returns when it is set (the job still ends canceled)."""
    mark(run, "started")
    while not genqueue.current().cancelled:
        time.sleep(0.02)
    mark(run, "saw")
    return "stopped early"


@genqueue.task
def stubborn(run: str, seconds: float = 60) -> str:
    """Never looks: only the worker can stop it."""
    mark(run, "started")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    mark(run, "ended")
    return "done"


@genqueue.task
async def polite_async(run: str) -> str:
    mark(run, "started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        mark(run, "saw")
        raise
    return "done"


@genqueue.task
def quick(run: str, seconds: float = 0) -> str:
    time.sleep(seconds)
    mark(run, "ran")
    return "ok"


@genqueue.task(limit_key="cancel-lab-TAG", limits={"concurrency": 1})
def capped(run: str, seconds: float = 60) -> str:
    mark(run, "started")
    end = time.monotonic() + seconds
    while time.monotonic() < end and not genqueue.current().cancelled:
        time.sleep(0.02)
    return "done"
'''


@pytest.fixture
def lab(tmp_path, env, server):
    tag = uuid.uuid4().hex[:8]
    name = f"canceltasks_{tag}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS.replace("TAG", tag)))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    env["GENQUEUE_CANCEL_GRACE"] = "1"
    return name


@pytest.fixture
def run():
    return f"run-{uuid.uuid4().hex[:8]}"


def put(conn, queue, task, **kwargs):
    options = {k: kwargs.pop(k) for k in ("in_", "timeout") if k in kwargs}
    return enqueue_task(conn, queue, task, kwargs, **options, check=False).job.id


def cli_cancel(env, job_id, *extra):
    r = run_cli(env, "jobs", "cancel", job_id, "--json", *extra)
    assert r.code == 0, r.stderr
    return r.json()


def places(conn, queue, job_id) -> set[str]:
    """Every list and registry of the queue the id is in."""
    found = set()
    for name, key in (("queue", keys.rq_queue(queue)), ("intermediate", f"rq:intermediate:{queue}")):
        if job_id.encode() in conn.lrange(key, 0, -1):
            found.add(name)
    for name in ("scheduled", "wip", "finished", "failed", "canceled", "deferred"):  # wip: RQ's started registry
        if conn.zscore(f"rq:{name}:{queue}", job_id) is not None:
            found.add(f"{name} registry")
    return found


def assert_canceled(conn, store, queue, job_id, *, by: str | None = None, reason: str | None = None) -> dict:
    info = job_status(conn, store, job_id)
    assert info["status"] == "canceled", info
    assert places(conn, queue, job_id) == {"canceled registry"}
    assert not store.exists(job_id)
    [record] = [h for h in info["history"] if h.get("action") == "canceled"]
    assert record["at"]
    if by is not None:
        assert by in record["by"]
    if reason is not None:
        assert record["reason"] == reason
    return info


def test_queued_job_canceled_by_cli_never_runs_and_twice_is_idempotent(conn, settings, store, env, lab, run, workers):
    job_id = put(conn, settings.queue, f"{lab}.quick", run=run)
    out = cli_cancel(env, job_id, "--reason", "wrong prompt file")
    assert (out["status"], out["previous_status"], out["stopping"], out["already"]) == (
        "canceled",
        "queued",
        False,
        False,
    )
    assert_canceled(conn, store, settings.queue, job_id, reason="wrong prompt file")
    assert cli_cancel(env, job_id)["already"] is True
    assert int(conn.hget(keys.metrics(settings.queue), "canceled")) == 1
    # A worker started now runs the next job, never the canceled one.
    later = put(conn, settings.queue, f"{lab}.quick", run=run)
    workers(extra=("--tasks", lab))
    wait_for(lambda: job_status(conn, store, later)["status"] == "finished", message="the later job to finish")
    assert [x.decode() for x in conn.lrange(f"{run}:ran", 0, -1)] == [later]
    assert job_status(conn, store, job_id)["status"] == "canceled"
    r = run_cli(env, "jobs", "cancel", later)
    assert r.code == 4 and "already finished" in r.stderr and r.stderr.count("\n") == 1


def test_scheduled_job_canceled_over_http(client, token, conn, settings, store, lab, run):
    job_id = put(conn, settings.queue, f"{lab}.quick", run=run, in_=timedelta(hours=1))
    assert places(conn, settings.queue, job_id) == {"scheduled registry"}
    r = client.post(f"/api/jobs/{job_id}/cancel", json={"reason": "not needed"}, headers=token(admin=True))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["previous_status"] == "scheduled"
    assert_canceled(conn, store, settings.queue, job_id, reason="not needed")
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=token(admin=True))
    assert again.status_code == 200 and again.json()["data"]["already"] is True


def test_cancel_over_http_is_tenant_checked_and_409_once_finished(
    client, token, conn, settings, store, lab, run, workers
):
    job_id = put(conn, settings.queue, f"{lab}.quick", run=run, in_=timedelta(hours=1))
    conn.hset(keys.rq_job(job_id), "meta", json.dumps({"genqueue": {"history": [], "tenant": "acme"}}))
    r = client.post(f"/api/jobs/{job_id}/cancel", headers=token(tenant="other"))
    assert r.status_code in (403, 404) and r.json()["error"]["code"]
    assert job_status(conn, store, job_id)["status"] == "scheduled"
    r = client.post(f"/api/jobs/{job_id}/cancel", headers=token(tenant="acme"))
    assert r.status_code == 200, r.text
    done = put(conn, settings.queue, f"{lab}.quick", run=run)
    workers(extra=("--tasks", lab))
    wait_for(lambda: job_status(conn, store, done)["status"] == "finished", message="the job to finish")
    r = client.post(f"/api/jobs/{done}/cancel", headers=token(admin=True))
    assert r.status_code == 409 and "already finished" in r.json()["error"]["message"]
    assert client.post("/api/jobs/no-such-job/cancel", headers=token(admin=True)).status_code == 404


def test_parked_job_canceled_at_once_and_out_of_its_parked_list(conn, settings, store, env, lab, run, workers):
    first = put(conn, settings.queue, f"{lab}.capped", run=run)
    second = put(conn, settings.queue, f"{lab}.capped", run=run)
    workers(extra=("--concurrency", "2", "--tasks", lab))  # a second slot: both are popped, one of them parks
    # Which one claims the key's one slot first is up to the worker's two threads: the other one parks.
    parked = wait_for(
        lambda: next((j for j in (first, second) if job_status(conn, store, j)["status"] == "parked"), None),
        timeout=90,
        message="one of the two jobs to park",
    )
    holder = second if parked == first else first
    parked_list = conn.hget(keys.rq_job(parked), "genqueue_parked")
    assert parked.encode() in conn.lrange(parked_list, 0, -1)
    out = cli_cancel(env, parked)
    assert out["previous_status"] == "parked"
    assert_canceled(conn, store, settings.queue, parked)
    assert parked.encode() not in conn.lrange(parked_list, 0, -1)
    assert int(conn.hget(keys.PARKED, settings.queue) or 0) == 0
    # The holder, canceled while running, gives its slot back; nothing else is left holding it.
    assert cli_cancel(env, holder)["stopping"] is True
    wait_for(lambda: job_status(conn, store, holder)["status"] == "canceled", message="the holder to be canceled")
    assert conn.zcard(conn.hget(keys.rq_job(parked), "genqueue_parked").decode().rsplit("parked:", 1)[0] + "slots") == 0


@pytest.mark.parametrize(
    ("mode", "task", "stopped_by", "face"),
    [
        ("fork", "polite", "task", "cli"),
        ("fork", "stubborn", "worker", "http"),
        ("simple", "polite", "task", "http"),
        ("concurrent", "stubborn", "worker", "cli"),
        ("concurrent", "polite", "task", "http"),
        ("concurrent", "polite_async", "task", "http"),
    ],
)
def test_running_job_is_stopped_and_ends_canceled_once(
    client, token, conn, settings, store, env, lab, run, workers, mode, task, stopped_by, face
):
    extra = {"fork": (), "simple": ("--simple",), "concurrent": ("--concurrency", "4")}[mode]
    worker = workers(simple=False, extra=(*extra, "--tasks", lab))
    job_id = put(conn, settings.queue, f"{lab}.{task}", run=run, timeout=120)
    wait_for(lambda: conn.llen(f"{run}:started") == 1, message="the task to start")
    if face == "cli":
        out = cli_cancel(env, job_id, "--reason", "user closed the tab")
    else:
        r = client.post(f"/api/jobs/{job_id}/cancel", json={"reason": "user closed the tab"}, headers=token(admin=True))
        assert r.status_code == 200, r.text
        out = r.json()["data"]
    assert (out["previous_status"], out["stopping"]) == ("running", True)
    assert job_status(conn, store, job_id)["cancel"]["reason"] == "user closed the tab"
    info = wait_for(
        lambda: (i := job_status(conn, store, job_id))["status"] == "canceled" and i,
        timeout=20,
        message="the running job to be canceled",
    )
    assert_canceled(conn, store, settings.queue, job_id, reason="user closed the tab")
    assert [h["action"] for h in info["history"]] == ["canceled"], info["history"]  # never retried
    if stopped_by == "task":
        assert conn.llen(f"{run}:saw") == 1
    assert conn.llen(f"{run}:ended") == 0  # a stubborn task was stopped, not let finish
    assert conn.xlen(f"rq:results:{job_id}") == 0 or all(
        f.get(b"type") != b"1" for _, f in conn.xrange(f"rq:results:{job_id}")
    )  # no success recorded
    assert cli_cancel(env, job_id)["already"] is True
    # The worker goes on with the next job.
    after = put(conn, settings.queue, f"{lab}.quick", run=run)
    wait_for(lambda: job_status(conn, store, after)["status"] == "finished", message="the next job to finish")
    assert worker.alive()


def test_cancel_racing_success_200_times_has_one_outcome_matching_its_answer(conn, settings, store, lab, run, workers):
    workers(extra=("--concurrency", "8", "--tasks", lab))
    answers: dict[str, str] = {}
    for i in range(200):
        job_id = put(conn, settings.queue, f"{lab}.quick", run=run)
        time.sleep((i % 20) / 1000)  # from before the pop to after the success
        try:
            cancel_job(conn, store, job_id, by="race")
            answers[job_id] = "canceled"
        except Conflict as exc:
            assert "already finished" in str(exc)
            answers[job_id] = "finished"

    def final(job_id):
        return job_status(conn, store, job_id)["status"]

    wait_for(lambda: all(final(j) in ("canceled", "finished") for j in answers), timeout=60, message="every job to end")
    for job_id, answer in answers.items():
        assert final(job_id) == answer, job_id
        assert len(places(conn, settings.queue, job_id)) == 1
    ran = [x.decode() for x in conn.lrange(f"{run}:ran", 0, -1)]
    assert len(ran) == len(set(ran))
    outcomes = set(answers.values())
    assert outcomes == {"canceled", "finished"}, outcomes  # the race really went both ways


def test_run_cancel_mid_way_leaves_every_item_in_exactly_one_place(
    client, token, conn, settings, store, env, lab, run, workers, tmp_path
):
    run_id = f"r{uuid.uuid4().hex[:8]}"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"run": run, "seconds": 0.1}) + "\n" for _ in range(200)))
    r = run_cli(env, "runs", "submit", str(path), "--run-id", run_id, "--task", f"{lab}.quick", "--tasks", lab)
    assert r.code == 0, r.stderr
    workers(extra=("--concurrency", "4", "--tasks", lab))
    wait_for(lambda: conn.llen(f"{run}:ran") >= 20, message="some items to run")
    r = run_cli(env, "runs", "cancel", run_id, "--reason", "wrong file", "--json")
    assert r.code == 0, r.stderr
    counts = r.json()
    assert counts["canceled"] + counts["stopping"] + counts["finished"] == 200, counts
    assert counts["canceled"] > 0 and counts["finished"] >= 20, counts
    ids = [f"{run_id}-item-{i}" for i in range(200)]

    def settled():
        return all(job_status(conn, store, i)["status"] in ("canceled", "finished") for i in ids)

    wait_for(settled, message="every item to settle")
    for i in ids:
        assert len(places(conn, settings.queue, i)) == 1, (i, places(conn, settings.queue, i))
    canceled = sum(job_status(conn, store, i)["status"] == "canceled" for i in ids)
    assert canceled == counts["canceled"] + counts["stopping"]
    ran = [x.decode() for x in conn.lrange(f"{run}:ran", 0, -1)]
    assert len(ran) == len(set(ran))
    assert {i for i in ids if job_status(conn, store, i)["status"] == "finished"} <= set(ran)
    # Over HTTP, again: nothing left to cancel; another tenant may not.
    r = client.post(f"/api/runs/{run_id}/cancel", headers=token(admin=True))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["already"] == canceled and r.json()["data"]["canceled"] == 0
    assert client.post("/api/runs/no-such-run/cancel", headers=token(admin=True)).status_code == 404


def test_a_canceled_running_job_retried_by_hand_runs_to_its_end(conn, settings, store, env, lab, run, workers):
    workers(extra=("--tasks", lab))
    job_id = put(conn, settings.queue, f"{lab}.stubborn", run=run, seconds=3, timeout=120)
    wait_for(lambda: conn.llen(f"{run}:started") == 1, message="the task to start")
    assert cli_cancel(env, job_id)["stopping"] is True
    wait_for(lambda: job_status(conn, store, job_id)["status"] == "canceled", message="the job to be canceled")
    assert not conn.exists(keys.cancel_request(job_id))  # the request is spent: the record is on the job
    r = run_cli(env, "jobs", "retry", job_id)
    assert r.code == 0, r.stderr
    info = wait_for(
        lambda: (i := job_status(conn, store, job_id))["status"] in ("finished", "canceled") and i,
        message="the retried job to end",
    )
    assert info["status"] == "finished" and info["result"] == "done", info  # no stale request stopped it
    assert [h["action"] for h in info["history"]][:1] == ["canceled"]
