"""Artifacts belong to one execution: a job id reused by another tenant, once the first job is gone, writes
its artifacts elsewhere and never overwrites (or serves) the first tenant's. Real worker processes."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from genqueue.backend.queues import fetch_job
from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import WorkerProcess, wait_for

TASKS = """
import genqueue
from genqueue.tasks import artifacts


@genqueue.task
def write(text: str) -> dict:
    return {"uri": artifacts.put(genqueue.current().job_id, "out.txt", text.encode())}
"""


def test_a_reused_job_id_never_overwrites_another_tenants_artifacts(conn, settings, store, env, tmp_path):
    module = f"arttasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS))
    env = dict(env, PYTHONPATH=f"{tmp_path}:{env['PYTHONPATH']}")
    job_id = f"art-{uuid.uuid4().hex[:8]}"
    uris = {}
    for tenant in ("alice", "bob"):
        enqueue_task(
            conn, settings.queue, f"{module}.write", {"text": f"{tenant}'s"}, job_id=job_id, tenant=tenant, check=False
        )
        worker = WorkerProcess(env, settings.queue, extra=("--tasks", module, "--burst"))
        worker.proc.wait(60)
        info = wait_for(
            lambda: (i := job_status(conn, store, job_id))["status"] == "finished" and i, message="finished"
        )
        uris[tenant] = fetch_job(conn, job_id).return_value()["uri"]
        assert info["tenant"] == tenant
        fetch_job(conn, job_id).delete()  # its result expired: the id is free for anyone
    alice, bob = (Path(urlsplit(uris[t]).path) for t in ("alice", "bob"))
    assert alice != bob and alice.read_bytes() == b"alice's" and bob.read_bytes() == b"bob's"
    assert alice.parent.parent.parent.name == "alice" and bob.parent.parent.parent.name == "bob"
