"""The embedded server restarted in the middle of a run: nothing lost, nothing completed twice.

Workers lose their connection when the server goes away and exit (as RQ workers do); like a process
supervisor (honcho, systemd), the test starts replacements. Jobs caught mid-flight are found abandoned
after the restart and retried as CRASH. The restart is graceful (SIGTERM: valkey flushes its append-only
file); a server *crash* can lose up to a second of writes with appendfsync everysec (see README).
"""

from __future__ import annotations

import pytest

from genqueue.connection import EmbeddedServer, connect_url
from genqueue.dlq.store import DLQStore
from genqueue.producer import enqueue
from tests.helpers import WorkerProcess, wait_for

JOBS = 120


@pytest.fixture
def own_server(tmp_path, env):
    """An embedded server of this test's own (even when the suite runs against REDIS_URL)."""
    home = tmp_path / "srv"
    server = EmbeddedServer(home)
    server.start()
    e = dict(env, GENQUEUE_HOME=str(home), GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3",
             GENQUEUE_SIM_LATENCY="0.02")
    e.pop("REDIS_URL", None)
    yield server, e
    server.stop()


def terminal(conn, store, ids):
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
        replies = pipe.execute()
    return sum(1 for s, d in zip(replies[::2], replies[1::2]) if s == b"finished" or (d and s is None))


def test_graceful_restart_mid_run_loses_nothing(own_server, queue_name):
    server, env = own_server
    conn = connect_url(server.url)
    store = DLQStore(conn, queue_name, retention_s=3600)
    ids = [enqueue(conn, queue_name, {"prompt": f"p{i}", "simulate": ["ok"]}, job_id=f"{queue_name}-{i}").job.id
           for i in range(JOBS)]
    workers = [WorkerProcess(env, queue_name) for _ in range(2)]
    wait_for(lambda: terminal(conn, store, ids) >= JOBS // 4, message="a quarter of the jobs to finish")
    server.stop()
    assert not server.status().running
    server.start()
    conn = connect_url(server.url)
    store = DLQStore(conn, queue_name, retention_s=3600)
    assert terminal(conn, store, ids) < JOBS, "the restart must happen mid-run"
    try:
        def progressed():
            for i, w in enumerate(workers):  # the supervisor's job: replace workers that exited
                if not w.alive():
                    w.stop()
                    workers[i] = WorkerProcess(env, queue_name)
            return terminal(conn, store, ids) == JOBS

        wait_for(progressed, timeout=90, interval=0.2, message="every job to finish after the restart")
    finally:
        for w in workers:
            w.stop()
    statuses = [conn.hget(f"rq:job:{job_id}", "status") for job_id in ids]
    assert statuses.count(b"finished") == JOBS and store.count() == 0
    successes = [sum(1 for _, f in conn.xrange(f"rq:results:{job_id}") if f.get(b"type") == b"1") for job_id in ids]
    assert max(successes) == 1, "a job completed twice"
    assert conn.zcard(f"rq:wip:{queue_name}") == 0 and conn.llen(f"rq:queue:{queue_name}") == 0
