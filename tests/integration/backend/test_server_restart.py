"""The server goes away mid-run — SIGKILLed or stopped — and comes back: every worker is still running,
nothing is lost, nothing completes twice, nothing lands in RQ's FailedJobRegistry. No supervisor here:
the workers have to survive on their own (outage.py). Past GENQUEUE_REDIS_OUTAGE_S a worker exits 5
with one line. Acknowledged writes survive a SIGKILL of the server (AOF, appendfsync everysec).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from genqueue.backend.connection import EmbeddedServer, connect_url
from genqueue.dlq.store import DLQStore
from genqueue.jobs.enqueue import enqueue
from tests.helpers import WorkerProcess, run_cli, wait_for

JOBS = 120
OUTAGE_S = 2.0  # how long the server stays down: part of the scenario, not a synchronisation


@pytest.fixture
def own_server(tmp_path, env):
    """An embedded server of this test's own (even when the suite runs against REDIS_URL)."""
    home = tmp_path / "srv"
    server = EmbeddedServer(home)
    server.start()
    e = dict(
        env,
        GENQUEUE_HOME=str(home),
        GENQUEUE_LIVENESS_TTL="1",
        GENQUEUE_SWEEP_INTERVAL="0.3",
        GENQUEUE_SIM_LATENCY="0.02",
    )
    e.pop("REDIS_URL", None)
    yield server, e
    server.stop()


def crash(server: EmbeddedServer) -> int:
    """SIGKILL the server process (no AOF flush, no socket cleanup); returns its pid."""
    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not server.status().running, message="the server to die")
    return pid


def terminal(conn, store, ids):
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
        replies = pipe.execute()
    return sum(1 for s, d in zip(replies[::2], replies[1::2], strict=False) if s == b"finished" or (d and s is None))


def assert_clean_finish(conn, store, queue_name, ids):
    statuses = [conn.hget(f"rq:job:{job_id}", "status") for job_id in ids]
    assert statuses.count(b"finished") == len(ids) and store.count() == 0
    successes = [sum(1 for _, f in conn.xrange(f"rq:results:{job_id}") if f.get(b"type") == b"1") for job_id in ids]
    assert max(successes) == 1, "a job completed twice"
    for key in (f"rq:wip:{queue_name}", f"rq:failed:{queue_name}", f"rq:scheduled:{queue_name}"):
        assert conn.zcard(key) == 0, key
    from genqueue.tenants.fair import waiting

    assert waiting(conn, [queue_name])[queue_name] == 0


@pytest.mark.parametrize(
    "how,simple",
    [("kill", False), ("kill", True), ("stop", False)],
    ids=["sigkill-forking", "sigkill-simple", "graceful-forking"],
)
def test_server_restart_mid_run_workers_survive(own_server, queue_name, how, simple):
    server, env = own_server
    conn = connect_url(server.url)
    store = DLQStore(conn, queue_name, retention_s=3600)
    outcomes = (["ok"], ["500", "ok"], ["reset", "ok"])
    ids = [
        enqueue(conn, queue_name, {"prompt": f"p{i}", "simulate": outcomes[i % 3]}, job_id=f"{queue_name}-{i}").job.id
        for i in range(JOBS)
    ]
    workers = [WorkerProcess(env, queue_name, simple=simple) for _ in range(2)]
    try:
        wait_for(lambda: terminal(conn, store, ids) >= JOBS // 4, message="a quarter of the jobs to finish")
        if how == "kill":
            crash(server)
        else:
            server.stop()
        time.sleep(OUTAGE_S)
        assert run_cli(env, "server", "start").code == 0
        conn = connect_url(server.url)
        store = DLQStore(conn, queue_name, retention_s=3600)
        assert terminal(conn, store, ids) < JOBS, "the restart must happen mid-run"
        wait_for(
            lambda: terminal(conn, store, ids) == JOBS,
            timeout=90,
            interval=0.2,
            message="every job to finish after the restart",
        )
        assert [w.alive() for w in workers] == [True, True], "a worker exited over the outage"
    finally:
        for w in workers:
            w.stop()
    assert_clean_finish(conn, store, queue_name, ids)
    for w in workers:
        log = w.log()
        assert "redis.unreachable" in log and "redis.reconnected" in log
        assert "Traceback" not in log


def test_worker_exits_5_with_one_line_when_the_outage_lasts_too_long(own_server, queue_name):
    server, env = own_server
    worker = WorkerProcess(dict(env, GENQUEUE_REDIS_OUTAGE_S="1.5"), queue_name)
    conn = connect_url(server.url)
    try:
        wait_for(lambda: conn.scard("genqueue:workers") == 1, message="the worker to register")
        crash(server)
        wait_for(lambda: not worker.alive(), timeout=30, message="the worker to give up")
        assert worker.proc.returncode == 5
    finally:
        worker.stop()
        server.start()
    log = worker.log()
    assert "Traceback" not in log
    [line] = [ln for ln in log.splitlines() if ln.startswith("error: ")]
    assert "GENQUEUE_REDIS_OUTAGE_S" in line and "stopping" in line


def test_acknowledged_enqueues_survive_a_server_sigkill(own_server, queue_name):
    server, _ = own_server
    conn = connect_url(server.url)
    acked: list[str] = []
    stopped = threading.Event()

    def produce():
        i = 0
        try:
            while True:
                job_id = f"{queue_name}-ack-{i}"
                enqueue(conn, queue_name, {"prompt": f"p{i}"}, job_id=job_id)
                acked.append(job_id)  # only after the server acknowledged the transaction
                i += 1
        except Exception:  # noqa: BLE001 - the server died under us: that is the point
            stopped.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 300, message="300 acknowledged enqueues")
    crash(server)
    assert stopped.wait(30), "the producer must notice the crash"
    assert server.start()
    conn = connect_url(server.url)
    from genqueue.tenants.fair import waiting_ids

    queued = set(waiting_ids(conn, queue_name))  # RQ's list and the fair lanes in front of it
    missing = [job_id for job_id in acked if job_id not in queued or not conn.exists(f"rq:job:{job_id}")]
    assert missing == [], f"{len(missing)} acknowledged enqueues lost: {missing[:5]}"


def test_server_start_after_a_crash_replaces_the_stale_socket_and_pid(own_server):
    server, env = own_server
    old_pid = crash(server)
    assert server.socket.exists() and server.pidfile.exists(), "a crash leaves both behind"
    started = run_cli(env, "server", "start", "--json").json()
    assert started["started"] and started["running"] and started["pid"] not in (None, old_pid)
