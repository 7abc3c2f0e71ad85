"""Workers SIGKILLed mid-job: the job is found abandoned within seconds, retried as CRASH (not charged),
and a forking worker's orphaned work horse dies with it, so the job never completes twice."""

from __future__ import annotations

import os

import pytest

from genqueue.jobs.enqueue import enqueue
from genqueue.jobs.status import job_status
from tests.helpers import WorkerProcess, children_of, wait_for

FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}


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
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=30,
            message="the abandoned job to be retried and finish",
        )
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
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=30,
            message="the slow job to finish",
        )
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
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=20,
            message="the retried job to finish",
        )
    finally:
        second.stop()
    assert [h["kind"] for h in info["history"]] == ["TRANSIENT", "TRANSIENT"]


def _start_and_kill_mid_job(conn, settings, env):
    victim = WorkerProcess(dict(env, **FAST), settings.queue)
    job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["sleep=20", "ok"]}, max_retries=0).job.id
    started_key = f"rq:wip:{settings.queue}"
    wait_for(lambda: conn.zcard(started_key) == 1, message="the job to start")
    victim.kill()
    return job_id, started_key


def test_an_rq_reader_while_a_worker_lies_dead_mid_job_fails_nothing(conn, settings, store, env):
    """`rq info` / rq-dashboard run StartedJobRegistry.cleanup on every count: it must find nothing of ours."""
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    from genqueue.backend.queues import SERIALIZER

    job_id, _ = _start_and_kill_mid_job(conn, settings, env)
    started = StartedJobRegistry(settings.queue, connection=conn, serializer=SERIALIZER)
    failed = FailedJobRegistry(settings.queue, connection=conn, serializer=SERIALIZER)
    rescuer = WorkerProcess(dict(env, **FAST), settings.queue)
    seen_failed = []

    def finished_while_reading():
        started.count  # noqa: B018 - what `rq info` does: cleanup() first, then ZCARD
        seen_failed.append(failed.count)
        return job_status(conn, store, job_id)["status"] == "finished"

    try:
        wait_for(finished_while_reading, timeout=30, message="the abandoned job to be retried and finish")
    finally:
        rescuer.stop()
    assert max(seen_failed) == 0, "RQ's cleanup moved a genqueue job to FailedJobRegistry"
    [h] = job_status(conn, store, job_id)["history"]
    assert (h["kind"], h["error"]["type"], h["charged"]) == ("CRASH", "AbandonedJob", False)


def test_a_job_rq_failed_as_abandoned_is_taken_back_as_a_crash_retry(conn, settings, store, env):
    """If RQ's cleanup does get there first (its expiry passed, e.g. during a long outage), the sweep
    takes the job back from FailedJobRegistry as an uncharged CRASH retry — no manual `dlq recover`."""
    import time

    from rq.registry import FailedJobRegistry, StartedJobRegistry

    from genqueue.backend.queues import SERIALIZER

    job_id, started_key = _start_and_kill_mid_job(conn, settings, env)
    [member] = conn.zrange(started_key, 0, -1)
    conn.zadd(started_key, {member: time.time() - 1})  # the claim's expiry passed while nobody swept
    assert StartedJobRegistry(settings.queue, connection=conn, serializer=SERIALIZER).count == 0
    failed = FailedJobRegistry(settings.queue, connection=conn, serializer=SERIALIZER)
    assert job_id in failed.get_job_ids(cleanup=False), "RQ's cleanup should have failed it (the scenario)"
    rescuer = WorkerProcess(dict(env, **FAST), settings.queue)
    try:
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=30,
            message="the job to be taken back and finish",
        )
    finally:
        rescuer.stop()
    assert failed.get_job_ids(cleanup=False) == []
    [h] = info["history"]
    assert (h["kind"], h["charged"], h["action"]) == ("CRASH", False, "retry")
    assert "FailedJobRegistry" in h["error"]["message"]


def test_a_worker_frozen_past_its_liveness_ttl_completes_nothing_twice(conn, settings, store, env):
    """SIGSTOP the worker (its work horse runs on) for longer than the liveness TTL: the sweep retries the
    job elsewhere, the horse's late success steps aside, and the worker carries on when resumed."""
    import signal

    fast_env = dict(env, **FAST)
    frozen = WorkerProcess(fast_env, settings.queue)
    # The horse must still be running when the rescuer's sweep takes the job back (liveness TTL 1 s, a
    # worker start on a loaded machine a few seconds): 10 s leaves room; shorter, the horse finishes first.
    job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["sleep=10", "ok"]}).job.id
    wait_for(lambda: conn.zcard(f"rq:wip:{settings.queue}") == 1, message="the job to start")
    [frozen_name] = [
        key.decode().removeprefix("rq:worker:")
        for key in conn.smembers(f"rq:workers:{settings.queue}")
        if conn.hget(key, "pid") == str(frozen.pid).encode()
    ]
    os.kill(frozen.pid, signal.SIGSTOP)
    rescuer = WorkerProcess(fast_env, settings.queue)
    try:
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=30,
            message="the job to be retried elsewhere and finish",
        )
        wait_for(
            lambda: "job.success_claimed_elsewhere" in frozen.log(),
            timeout=30,
            message="the frozen worker's horse to finish and step aside",
        )
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    try:
        wait_for(lambda: conn.exists(f"genqueue:alive:{frozen_name}"), message="the resumed worker to beat again")
        assert frozen.alive()
    finally:
        rescuer.stop()
        frozen.stop()
    successes = sum(1 for _, f in conn.xrange(f"rq:results:{job_id}") if f.get(b"type") == b"1")
    assert successes == 1, "the job completed twice"
    assert [h["kind"] for h in info["history"]] == ["CRASH"]


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_a_job_id_queued_twice_runs_once(conn, settings, store, env, simple):
    """A stranded job pushed back while its popper was only slow, or a push replayed around a server crash,
    can leave one id in the queue twice: the second pop finds it no longer queued and skips it."""
    job_id = enqueue(conn, settings.queue, {"prompt": "p", "simulate": ["ok"]}).job.id
    conn.rpush(f"rq:queue:{settings.queue}", job_id)  # the duplicate
    worker = WorkerProcess(dict(env, **FAST), settings.queue, simple=simple)
    try:
        wait_for(lambda: "job.duplicate_dispatch_skipped" in worker.log(), message="the second copy to be skipped")
    finally:
        worker.stop()
    successes = sum(1 for _, f in conn.xrange(f"rq:results:{job_id}") if f.get(b"type") == b"1")
    assert successes == 1 and job_status(conn, store, job_id)["status"] == "finished"
    assert conn.llen(f"rq:queue:{settings.queue}") == 0 and conn.llen(f"rq:queue:{settings.queue}:intermediate") == 0
