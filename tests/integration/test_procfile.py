"""The documented deployment: `honcho start` with the project's Procfile. honcho stops every process as soon
as one exits, so a server outage that ended any worker or the scheduler would end the whole deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from genqueue.backend.connection import EmbeddedServer, connect_url
from genqueue.jobs.enqueue import enqueue
from tests.api.conftest import free_port
from tests.helpers import descendants, wait_for
from tests.integration.backend.test_server_restart import OUTAGE_S, crash

ROOT = Path(__file__).resolve().parents[2]
JOBS = 80


def test_honcho_and_all_its_processes_survive_a_server_crash(tmp_path, env, queue_name):
    home = tmp_path / "srv"
    server = EmbeddedServer(home)
    server.start()
    bin_dir = os.path.dirname(sys.executable)
    e = dict(
        env,
        GENQUEUE_HOME=str(home),
        GENQUEUE_LIVENESS_TTL="1",
        GENQUEUE_SWEEP_INTERVAL="0.3",
        GENQUEUE_SIM_LATENCY="0.02",
        GENQUEUE_MAINTENANCE_INTERVAL="1",
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
    )
    e.pop("REDIS_URL", None)
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(
            [
                os.path.join(bin_dir, "honcho"),
                "start",
                "-f",
                str(ROOT / "Procfile"),
                "-d",
                str(ROOT),
                "-c",
                "worker=2",
                "--no-colour",
                "-p",
                str(free_port()),
            ],
            env=e,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    conn = connect_url(server.url)
    try:
        wait_for(lambda: conn.scard("genqueue:workers") == 2, message="honcho's two workers to register")
        processes = wait_for(
            lambda: (p := genqueue_processes(honcho.pid)) and len(p) >= 4 and p,
            message="two workers, the scheduler and the API under honcho",
        )
        ids = [
            enqueue(
                conn,
                queue_name,
                {"prompt": f"p{i}", "simulate": ["ok"] if i % 2 else ["500", "ok"]},
                job_id=f"{queue_name}-{i}",
            ).job.id
            for i in range(JOBS)
        ]
        wait_for(lambda: finished(conn, ids) >= JOBS // 4, message="a quarter of the jobs to finish")
        crash(server)
        time.sleep(OUTAGE_S)
        server.start()
        conn = connect_url(server.url)
        assert finished(conn, ids) < JOBS, "the crash must happen mid-run"
        wait_for(lambda: finished(conn, ids) == JOBS, timeout=90, interval=0.2, message="every job to finish")
        assert honcho.poll() is None, f"honcho ended:\n{log_path.read_text()[-3000:]}"
        assert genqueue_processes(honcho.pid) == processes, "a process under honcho exited or was replaced"
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGINT)
            honcho.wait(30)
        server.stop()
    assert "Traceback" not in log_path.read_text()


def genqueue_processes(root_pid: int) -> set[int]:
    """Pids of the `genqueue worker|scheduler|api` processes (not their work horses) below root_pid."""
    found = set()
    for pid in descendants(root_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"genqueue") for a in argv[:2]) and ({b"worker", b"scheduler", b"api"} & set(argv)):
            found.add(pid)
    return {pid for pid in found if not (set(ancestors(pid)) & found)}


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        chain.append(pid)
    return chain


def finished(conn, ids) -> int:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        return sum(1 for s in pipe.execute() if s == b"finished")
