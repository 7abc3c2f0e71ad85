"""Jobs written before the layout change still run: their RQ function name `genqueue.jobs.generate` is stored
in every queued, scheduled and dead-lettered job and in exported JSONL, and must keep resolving."""

from __future__ import annotations

import json

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.dlq_helpers import make_entry
from tests.helpers import run_cli, wait_for

OLD_FUNC = "genqueue.jobs.generate"  # the previous layout's genqueue/jobs.py:generate


def old_meta() -> dict:
    """job.meta["genqueue"] exactly as the previous version's producer wrote it."""
    return {
        "genqueue": {
            "max_retries": None,
            "retries": 0,
            "crashes": 0,
            "history": [],
            "budget_from": 0,
            "replays": 0,
            "replayed_from": None,
            "tenant": None,
        }
    }


def test_a_job_enqueued_by_the_previous_layout_runs(conn, settings, workers):
    # A plain RQ enqueue under the old dotted name: the hash the previous version left in Redis.
    q = Queue(settings.queue, connection=conn, serializer=JSONSerializer)
    q.enqueue(OLD_FUNC, {"prompt": "written before the move"}, job_id="old-layout-1", meta=old_meta())
    workers(simple=True, extra=("--burst",))
    job = wait_for(
        lambda: (
            (j := Job.fetch("old-layout-1", connection=conn, serializer=JSONSerializer)).get_status() == "finished"
            and j
        ),
        message="the old job to finish",
    )
    assert job.func_name == OLD_FUNC
    assert job.return_value()["output"] == "generated for 'written before the move'"


def test_an_entry_exported_by_the_previous_layout_imports_replays_and_runs(env, conn, settings, workers, tmp_path):
    entry = make_entry("old-layout-2", queue=settings.queue, payload={"prompt": "dead before the move"})
    assert entry["func"] == OLD_FUNC
    export = tmp_path / "old.jsonl"
    export.write_text(json.dumps(entry) + "\n")
    assert run_cli(env, "dlq", "import", str(export)).code == 0
    replayed = run_cli(env, "dlq", "retry", "old-layout-2", "--yes", "--json")
    assert replayed.code == 0, replayed.stderr
    job = Job.fetch("old-layout-2", connection=conn, serializer=JSONSerializer)
    assert job.func_name == OLD_FUNC and job.get_status() == "queued"
    workers(extra=("--burst",))  # forking: the work horse resolves the name too
    wait_for(lambda: job.get_status(refresh=True) == "finished", message="the replayed job to finish")
    assert job.return_value()["output"] == "generated for 'dead before the move'"
