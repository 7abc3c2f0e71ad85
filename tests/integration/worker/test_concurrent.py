"""`genqueue worker --concurrency N`: up to N jobs at once in one process (async tasks on a loop, sync tasks on
threads), each with the moves, timeouts and crash handling of a forking worker. Real processes, real server."""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid

import pytest

from genqueue.backend.connection import EmbeddedServer, connect_url
from genqueue.backend.outage import PatientRetry
from genqueue.backend.queues import make_queue
from genqueue.dlq.store import DLQStore
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import WorkerProcess, wait_for

FAST = {"GENQUEUE_LIVENESS_TTL": "1", "GENQUEUE_SWEEP_INTERVAL": "0.3"}

TASKS = '''
import asyncio
import os
import time

import redis

import genqueue

R = redis.Redis.from_url(os.environ["GQ_TEST_REDIS"])
# In flight now (KEYS[1]) and the most ever seen (KEYS[2]), updated atomically by each job as it starts.
ENTER = R.register_script("""
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n""")


def enter(run):
    ENTER(keys=[run + ":n", run + ":peak"])


def leave(run):
    ctx = genqueue.current()
    with R.pipeline() as pipe:
        pipe.decr(run + ":n")
        pipe.rpush(run + ":ran", ctx.job_id)
        pipe.execute()


@genqueue.task
async def wait_async(run: str, wait: float = 0.2, first: float = 0.0) -> str:
    enter(run)
    try:
        await asyncio.sleep(first if first and genqueue.current().attempt == 1 else wait)
    finally:
        leave(run)
    return "async"


@genqueue.task
def wait_sync(run: str, wait: float = 0.2, first: float = 0.0) -> str:
    enter(run)
    try:
        left = first if first and genqueue.current().attempt == 1 else wait
        end = time.monotonic() + left
        while time.monotonic() < end:  # Python code between short sleeps: interruptible
            time.sleep(0.02)
    finally:
        leave(run)
    return "sync"


@genqueue.task
def stuck_sync(run: str, first: float = 15.0) -> str:
    if genqueue.current().attempt == 1:
        time.sleep(first)  # one C call: the timeout cannot interrupt it
    leave(run)
    return "unstuck"
'''


@pytest.fixture
def tasks(tmp_path, env, server):
    name = f"conctasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GQ_TEST_REDIS"] = server[0]
    return name


def put(conn, queue, task, **kwargs):
    timeout = kwargs.pop("timeout", None)
    return enqueue_task(conn, queue, task, kwargs, timeout=timeout, check=False).job.id  # ahead of the workers


def successes(conn, job_id) -> int:
    return sum(1 for _, f in conn.xrange(f"rq:results:{job_id}") if f.get(b"type") == b"1")


def test_400_jobs_at_concurrency_50_finish_once_and_never_more_than_50_run(conn, settings, store, workers, tasks):
    run = f"run-{uuid.uuid4().hex[:8]}"
    ids = [put(conn, settings.queue, f"{tasks}.wait_async", run=run) for _ in range(200)]
    ids += [put(conn, settings.queue, f"{tasks}.wait_sync", run=run) for _ in range(200)]
    worker = workers(extra=("--concurrency", "50", "--tasks", tasks))
    finished = make_queue(conn, settings.queue).finished_job_registry.key
    wait_for(lambda: conn.zcard(finished) == 400, timeout=60, message="all 400 jobs to finish")
    ran = [raw.decode() for raw in conn.lrange(f"{run}:ran", 0, -1)]
    assert sorted(ran) == sorted(ids), "every job ran exactly once"
    assert all(successes(conn, job_id) == 1 for job_id in ids)
    peak = int(conn.get(f"{run}:peak"))
    assert 25 <= peak <= 50, peak  # concurrent (far above one at a time), and never above the limit
    assert int(conn.get(f"{run}:n")) == 0
    assert conn.llen(f"rq:queue:{settings.queue}") == 0 and conn.zcard(f"rq:wip:{settings.queue}") == 0
    assert not any(store.exists(i) for i in ids)
    assert {job_status(conn, store, i)["result"] for i in (ids[0], ids[-1])} == {"async", "sync"}
    # RQ sees one worker (one identity for the process) that ran 400 jobs.
    [key] = [k for k in conn.smembers(f"rq:workers:{settings.queue}")]
    assert int(conn.hget(key, "successful_job_count") or 0) == 400
    # Job threads start on demand, one per sync slot at most: 50, plus the worker's own (main, loop, moves,
    # heartbeat, timeouts; at most 22 of them at --concurrency 50).
    assert len(os.listdir(f"/proc/{worker.pid}/task")) <= 50 + 22
    assert worker.alive()


def test_async_and_thread_timeouts_are_timeout_retries_and_other_jobs_keep_running(
    conn, settings, store, workers, tasks
):
    run = f"run-{uuid.uuid4().hex[:8]}"
    slow_async = put(conn, settings.queue, f"{tasks}.wait_async", run=run, first=60, wait=0.01, timeout=2)
    slow_sync = put(conn, settings.queue, f"{tasks}.wait_sync", run=run, first=60, wait=0.01, timeout=2)
    stuck = put(conn, settings.queue, f"{tasks}.stuck_sync", run=run, timeout=1)
    worker = workers(extra=("--concurrency", "8", "--tasks", tasks))
    started = f"rq:wip:{settings.queue}"
    wait_for(lambda: conn.zcard(started) == 3, message="the three slow jobs to start")
    quick = [
        put(conn, settings.queue, f"{tasks}.wait_{kind}", run=run, wait=0.05)
        for kind in ("async", "sync")
        for _ in range(5)
    ]
    wait_for(
        lambda: all(job_status(conn, store, q)["status"] == "finished" for q in quick),
        message="the quick jobs to finish beside the slow ones",
    )
    assert job_status(conn, store, slow_async)["history"] == []  # they were still in their first attempt
    for job_id in (slow_async, slow_sync, stuck):
        info = wait_for(
            lambda job_id=job_id: (i := job_status(conn, store, job_id))["status"] == "finished" and i,
            timeout=40,
            message=f"{job_id} to time out, retry and finish",
        )
        [h] = info["history"]
        assert (h["kind"], h["error"]["type"], h["action"]) == ("TIMEOUT", "JobTimeoutException", "retry"), h
        assert successes(conn, job_id) == 1
    log = worker.log()
    assert log.count("job.timeout_uninterruptible") == 1 and stuck in log
    assert worker.alive()


def test_sigkill_of_a_concurrent_worker_is_n_crash_retries_none_lost_none_twice(conn, settings, store, env, tasks):
    fast = dict(env, **FAST)
    run = f"run-{uuid.uuid4().hex[:8]}"
    ids = [
        put(conn, settings.queue, f"{tasks}.wait_{kind}", run=run, wait=0.1, first=30)
        for kind in ("async", "sync")
        for _ in range(10)
    ]
    ids += [put(conn, settings.queue, f"{tasks}.wait_sync", run=run, wait=0.1) for _ in range(5)]  # still queued
    victim = WorkerProcess(fast, settings.queue, extra=("--concurrency", "20", "--tasks", tasks))
    wait_for(
        lambda: conn.zcard(f"rq:wip:{settings.queue}") == 20 and int(conn.get(f"{run}:n") or 0) == 20,
        message="20 jobs in flight",
    )
    victim.kill()
    rescuer = WorkerProcess(fast, settings.queue, extra=("--concurrency", "20", "--tasks", tasks))
    try:
        infos = wait_for(
            lambda: (
                all(
                    (i := [job_status(conn, store, j) for j in ids])[k]["status"] == "finished" for k in range(len(ids))
                )
                and i
            ),
            timeout=40,
            message="every job to finish",
        )
    finally:
        rescuer.stop()
    crashed = [i for i in infos if i["history"]]
    assert len(crashed) == 20, [i["history"] for i in infos]
    for info in crashed:
        [h] = info["history"]
        assert (h["kind"], h["error"]["type"], h["charged"]) == ("CRASH", "AbandonedJob", False)
    assert all(successes(conn, j) == 1 for j in ids), "a job completed twice (or never)"
    assert conn.zcard(f"rq:wip:{settings.queue}") == 0 and conn.llen(f"rq:queue:{settings.queue}") == 0
    assert not any(store.exists(j) for j in ids)


OUTAGE_S = 1.0  # how long the server stays down: part of the scenario, not a synchronisation


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, to SIGKILL (also when the suite runs against REDIS_URL)."""
    server = EmbeddedServer(tmp_path / "srv")
    server.start()
    yield server
    server.stop()


def test_a_server_sigkill_then_a_sigkill_of_a_concurrent_worker_with_20_in_flight_only_the_victim_exits(
    conn, env, tasks, own_server, queue_name
):
    """Issue 22: with a `--concurrency 20` worker holding 20 jobs and two others (concurrent, forking) working
    through 100 more, the server is SIGKILLed mid-run and restarted; then the full worker is SIGKILLed. Every
    job ends finished exactly once, the victim's 20 each after one uncharged CRASH, and no other worker
    exits. The tasks keep their tallies on the session server (`conn`), which the kill does not touch."""
    server = own_server
    fast = dict(env, GENQUEUE_HOME=str(server.home), **FAST)
    fast.pop("REDIS_URL", None)
    gq = connect_url(server.url, retry=PatientRetry(60))
    store = DLQStore(gq, queue_name, retention_s=3600)
    run = f"run-{uuid.uuid4().hex[:8]}"
    victim_name = f"victim-{run}"

    def ran() -> int:  # attempts that reached their end (the tallies are on the session server)
        return conn.llen(f"{run}:ran")

    def victims_in_flight() -> int:
        members = gq.zrange(f"rq:wip:{queue_name}", 0, -1)
        owners = [gq.hget(b"rq:execution:" + m, "worker_name") for m in members]
        return owners.count(victim_name.encode())

    long_ = [
        put(gq, queue_name, f"{tasks}.wait_{kind}", run=run, wait=0.05, first=60)
        for kind in ("async", "sync")
        for _ in range(10)
    ]
    victim = WorkerProcess(fast, queue_name, extra=("--concurrency", "20", "--tasks", tasks, "--name", victim_name))
    others = []
    try:
        wait_for(lambda: victims_in_flight() == 20 and int(conn.get(f"{run}:n") or 0) == 20, message="20 in flight")
        short = [
            put(gq, queue_name, f"{tasks}.wait_{kind}", run=run, wait=0.05)
            for _ in range(50)
            for kind in ("async", "sync")
        ]
        others = [
            WorkerProcess(fast, queue_name, extra=("--concurrency", "4", "--tasks", tasks)),
            WorkerProcess(fast, queue_name, extra=("--tasks", tasks)),
        ]
        wait_for(lambda: ran() >= 10, timeout=30, message="the other workers to be mid-run")
        os.kill(int(server.pidfile.read_text()), signal.SIGKILL)
        wait_for(lambda: not server.status().running, message="the server to die")
        before = ran()
        time.sleep(OUTAGE_S)
        server.start()
        assert before < len(short), "the server kill must happen mid-run"
        wait_for(lambda: ran() > before + 5, timeout=30, message="the other workers to carry on after the restart")
        assert victims_in_flight() == 20 and int(conn.get(f"{run}:n") or 0) >= 20, "the victim's 20 survive it"
        victim.kill()
        assert victim.proc.returncode == -signal.SIGKILL
        ids = long_ + short
        infos = wait_for(
            lambda: (
                all((i := [job_status(gq, store, j) for j in ids])[k]["status"] == "finished" for k in range(len(ids)))
                and i
            ),
            timeout=60,
            interval=0.2,
            message="every job to finish",
        )
        assert [w.alive() for w in others] == [True, True], "a worker other than the victim exited"
    finally:
        victim.stop()
        for w in others:
            w.stop()
    for info in infos[:20]:
        [h] = info["history"]
        assert (h["kind"], h["error"]["type"], h["charged"], h["worker"]) == (
            "CRASH",
            "AbandonedJob",
            False,
            victim_name,
        ), h
    assert all(h["kind"] == "CRASH" for info in infos[20:] for h in info["history"]), "only crashes"
    assert all(successes(gq, j) == 1 for j in ids), "a job completed twice (or never)"
    assert gq.zcard(make_queue(gq, queue_name).finished_job_registry.key) == len(ids)
    for key in (f"rq:wip:{queue_name}", f"rq:failed:{queue_name}", f"rq:scheduled:{queue_name}"):
        assert gq.zcard(key) == 0, key
    assert gq.llen(f"rq:queue:{queue_name}") == 0 and gq.llen(f"rq:queue:{queue_name}:intermediate") == 0
    assert store.count() == 0
    for w in [victim, *others]:
        assert "redis.unreachable" in w.log(), "every worker saw the outage"
    for w in others:
        assert "redis.reconnected" in w.log() and "Traceback" not in w.log()
    gq.close()


def test_warm_shutdown_finishes_what_fits_in_the_grace_and_requeues_the_rest_as_crash(
    conn, settings, store, env, tasks
):
    grace = dict(env, GENQUEUE_SHUTDOWN_GRACE="2")
    run = f"run-{uuid.uuid4().hex[:8]}"
    long_ = [
        put(conn, settings.queue, f"{tasks}.wait_{kind}", run=run, wait=0.05, first=60) for kind in ("async", "sync")
    ]
    short = [put(conn, settings.queue, f"{tasks}.wait_{kind}", run=run, wait=1) for kind in ("async", "sync")]
    worker = WorkerProcess(grace, settings.queue, extra=("--concurrency", "4", "--tasks", tasks))
    wait_for(lambda: int(conn.get(f"{run}:n") or 0) == 4, message="4 jobs in flight")
    extra = put(conn, settings.queue, f"{tasks}.wait_sync", run=run, wait=0.05)  # must not be popped any more
    worker.proc.terminate()
    assert worker.proc.wait(15) == 0
    worker.stop()
    for job_id in short:
        assert job_status(conn, store, job_id)["status"] == "finished"
    for job_id in long_:
        info = job_status(conn, store, job_id)
        [h] = info["history"]
        assert (h["kind"], h["error"]["type"], h["charged"]) == ("CRASH", "WorkerShutdown", False)
    assert job_status(conn, store, extra)["status"] == "queued"
    rescuer = WorkerProcess(grace, settings.queue, extra=("--concurrency", "4", "--tasks", tasks))
    try:
        wait_for(
            lambda: all(job_status(conn, store, j)["status"] == "finished" for j in [*long_, extra]),
            message="the requeued jobs to finish elsewhere",
        )
    finally:
        rescuer.stop()
    assert all(successes(conn, j) == 1 for j in [*long_, *short, extra])
