"""Workers SIGKILLed mid-job: the job is found abandoned within seconds, retried as CRASH (not charged),
and a forking worker's orphaned work horse dies with it, so the job never completes twice."""

from __future__ import annotations

import os

import pytest

from genqueue.producer import enqueue
from genqueue.status import job_status
from tests.helpers import WorkerProcess, wait_for

FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_sigkilled_worker_mid_job_is_retried_as_crash(conn, settings, store, env, simple):
    fast_env = dict(env, **FAST)
    victim = WorkerProcess(fast_env, settings.queue, simple=simple)
    job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["sleep=20", "ok"]}, max_retries=0).job.id
    started_key = f"rq:wip:{settings.queue}"
    wait_for(lambda: conn.zcard(started_key) == 1, message="the job to start")
    horses = [] if simple else wait_for(lambda: children_of(victim.pid), message="the work horse")
    victim.kill()
    rescuer = WorkerProcess(fast_env, settings.queue, simple=simple)
    try:
        info = wait_for(lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
                        timeout=30, message="the abandoned job to be retried and finish")
    finally:
        rescuer.stop()
    [h] = info["history"]
    assert (h["kind"], h["error"]["type"], h["charged"], h["action"]) == ("CRASH", "AbandonedJob", False, "retry")
    assert "died while running the job" in h["error"]["message"]
    assert info["attempts"] == 2  # max_retries=0 and it still ran again: crashes are not charged
    for horse in horses:
        assert not alive(horse), "the orphaned work horse must die with its worker"
    assert conn.zcard(started_key) == 0


def test_a_live_but_busy_worker_is_not_swept(conn, settings, store, env):
    fast_env = dict(env, **FAST)
    busy = WorkerProcess(fast_env, settings.queue)
    other = WorkerProcess(fast_env, settings.queue)
    try:
        job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["sleep=3", "ok"]}).job.id
        info = wait_for(lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
                        timeout=30, message="the slow job to finish")
    finally:
        busy.stop()
        other.stop()
    assert info["history"] == [] and info["attempts"] == 1


def test_retries_come_back_after_the_scheduling_worker_is_killed(conn, settings, store, env):
    fast_env = dict(env, **FAST)
    first = WorkerProcess(fast_env, settings.queue)
    wait_for(lambda: conn.get(f"rq:scheduler-lock:{settings.queue}"), message="a worker to take the scheduler lock")
    first.kill()
    second = WorkerProcess(fast_env, settings.queue)
    try:
        job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["500", "500", "ok"]}).job.id
        info = wait_for(lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
                        timeout=20, message="the retried job to finish")
    finally:
        second.stop()
    assert [h["kind"] for h in info["history"]] == ["TRANSIENT", "TRANSIENT"]
