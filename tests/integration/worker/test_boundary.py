"""The job boundary: nothing one job does or carries stops a worker. A limit key that cannot render, an exception
whose `__str__` raises, a result that is not JSON: each is that job's own failure (it lands in exactly one
place), and the worker — forking, `--simple` or `--concurrency` — goes on to the next job. Real processes."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from genqueue.jobs.enqueue import enqueue_task
from genqueue.jobs.status import job_status
from tests.helpers import wait_for

TASKS = """
import time

import genqueue


class Hostile(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")

    def __repr__(self):
        raise RuntimeError("no repr either")


@genqueue.task(limit_key="prov:{model}", max_retries=0)
def keyed(model: str) -> str:
    return "keyed " + model


@genqueue.task(max_retries=0)
def hostile() -> str:
    raise Hostile()


@genqueue.task(max_retries=0)
def not_json() -> object:
    return object()


@genqueue.task
def good(n: int) -> int:
    return n


@genqueue.task(max_retries=0)
def swallow(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # ignores its timeout: catches it and goes on
        try:
            time.sleep(0.05)
        except BaseException:
            pass
    return "late"
"""

CLASSES = {"fork": (), "simple": ("--simple",), "concurrent": ("--concurrency", "4")}


@pytest.fixture
def tasks(tmp_path, env):
    name = f"boundtasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return name


def put(conn, queue: str, task: str, **kwargs) -> str:
    return enqueue_task(conn, queue, task, kwargs, check=False).job.id


def dead(conn, store, job_id: str) -> dict:
    return wait_for(
        lambda: (i := job_status(conn, store, job_id))["status"] == "dead" and i,
        timeout=30,
        message=f"{job_id} to be dead-lettered",
    )


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_hostile_jobs_are_their_own_failures_and_the_worker_goes_on(conn, settings, store, workers, tasks, kind):
    q = settings.queue
    space = put(conn, q, f"{tasks}.keyed", model="gpt 4o")  # a space: the key cannot render
    long = put(conn, q, f"{tasks}.keyed", model="m" * 300)  # over the key's length bound
    hostile = put(conn, q, f"{tasks}.hostile")
    not_json = put(conn, q, f"{tasks}.not_json")
    goods = [put(conn, q, f"{tasks}.good", n=n) for n in range(3)]
    keyed_ok = put(conn, q, f"{tasks}.keyed", model="gpt-4o")
    worker = workers(extra=("--tasks", tasks, *CLASSES[kind]))

    for job_id in [*goods, keyed_ok]:
        wait_for(
            lambda job_id=job_id: job_status(conn, store, job_id)["status"] == "finished",
            timeout=30,
            message=f"good job {job_id} to finish after the hostile ones",
        )
    for job_id in (space, long):
        entry = dead(conn, store, job_id)
        [h] = entry["history"]
        assert h["kind"] == "PERMANENT" and h["error"]["type"] == "UnrunnableJob", h
        assert "limit key" in h["error"]["message"], h
    [h] = dead(conn, store, hostile)["history"]
    assert h["error"]["type"] == "Hostile" and h["kind"] != "CRASH", h
    assert "str() failed" in h["error"]["message"], h
    [h] = dead(conn, store, not_json)["history"]
    assert (h["kind"], h["error"]["type"]) == ("PERMANENT", "TypeError"), h
    assert "not JSON" in h["error"]["message"]
    # Each in exactly one place: nothing left running, queued or in RQ's failed registry.
    assert conn.zcard(f"rq:wip:{q}") == 0 and conn.llen(f"rq:queue:{q}") == 0
    assert conn.zcard(f"rq:failed:{q}") == 0
    assert worker.alive(), worker.log()[-3000:]
    assert "unhandled exception" not in worker.log()
    # And it still takes new work.
    later = put(conn, q, f"{tasks}.good", n=7)
    wait_for(lambda: job_status(conn, store, later)["status"] == "finished", message="a job after the hostile ones")


def test_a_concurrent_worker_with_too_many_stuck_threads_retires_with_status_6(conn, settings, store, workers, tasks):
    """Two threads ignore their 1 s timeout with --max-stuck-threads 1: both jobs end as TIMEOUT, the job still
    running beside them finishes, nothing more is taken, and the worker exits 6 (for its supervisor)."""
    q = settings.queue
    stuck = [
        enqueue_task(conn, q, f"{tasks}.swallow", {"seconds": 30}, timeout=1, check=False).job.id for _ in range(2)
    ]
    beside = enqueue_task(conn, q, f"{tasks}.swallow", {"seconds": 0}, timeout=60, check=False).job.id
    worker = workers(extra=("--tasks", tasks, "--concurrency", "4", "--max-stuck-threads", "1"))
    wait_for(lambda: not worker.alive(), timeout=40, message="the worker to retire")
    assert worker.proc.returncode == 6, worker.log()[-3000:]
    log = worker.log()
    assert log.count("job.timeout_uninterruptible") == 2 and log.count("worker.retiring") == 1, log[-3000:]
    for job_id in stuck:
        [h] = dead(conn, store, job_id)["history"]
        assert (h["kind"], h["error"]["type"]) == ("TIMEOUT", "JobTimeoutException"), h
    assert job_status(conn, store, beside)["status"] == "finished"
    later = put(conn, q, f"{tasks}.good", n=1)
    assert job_status(conn, store, later)["status"] == "queued"  # not taken by the retired worker


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_a_job_whose_bookkeeping_cannot_be_recorded_is_dead_lettered_and_the_worker_goes_on(
    conn, settings, store, workers, tasks, kind
):
    """A job whose genqueue history is not a list (an old or hand-made job): recording its failure raises; the
    boundary records it once more on clean bookkeeping, PERMANENT, both errors named."""
    q = settings.queue
    job = enqueue_task(conn, q, f"{tasks}.hostile", check=False).job
    job.meta["genqueue"]["history"] = "abc"
    job.save_meta()
    good = put(conn, q, f"{tasks}.good", n=1)
    worker = workers(extra=("--tasks", tasks, *CLASSES[kind]))
    entry = wait_for(lambda: store.exists(job.id) and store.get(job.id), message="the job dead-lettered")
    [h] = entry["history"]
    assert h["kind"] == "PERMANENT" and "recording it failed" in h["error"]["message"], h
    wait_for(lambda: job_status(conn, store, good)["status"] == "finished", message="the next job")
    assert conn.zcard(f"rq:wip:{q}") == 0 and worker.alive()


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_an_error_in_the_worker_loop_itself_is_exit_70_in_one_line(conn, settings, workers, tasks, kind):
    """Not a job's: the queue's own key is of the wrong type, so the pop itself fails. RQ logged a traceback and
    exited 0 (a supervisor restarting on failure left it down); here: one line, status 70."""
    conn.set(f"rq:queue:{settings.queue}", "not a list")
    worker = workers(extra=("--tasks", tasks, *CLASSES[kind]))
    wait_for(lambda: not worker.alive(), timeout=30, message="the worker to stop")
    assert worker.proc.returncode == 70, worker.log()[-2000:]
    errors = [line for line in worker.log().splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "WRONGTYPE" in errors[0] and "Traceback" not in worker.log(), errors


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_a_job_hash_field_rq_cannot_parse_is_that_jobs_failure_not_the_pops(
    conn, settings, store, workers, tasks, kind
):
    """A timeout of "abc" or 1e30 in a job hash (an old or plain-RQ producer, a hand edit): RQ's Job.restore raised
    inside the pop, outside any job, and every worker that popped the job stopped (status 70), the sweep putting it
    back for the next. Now the job is dead-lettered unknown_task, its fields named, nothing run; the worker goes on.
    A status nobody writes ("garbage") made the pop skip the job as a duplicate, leaving it in no place."""
    q = settings.queue
    bad = {}
    for field, value in (("timeout", "abc"), ("timeout", "1e30"), ("status", "garbage")):
        job = enqueue_task(conn, q, f"{tasks}.good", {"n": 1}, check=False).job
        conn.hset(job.key, field, value)
        bad[job.id] = field
    good = put(conn, q, f"{tasks}.good", n=2)
    worker = workers(extra=("--tasks", tasks, *CLASSES[kind]))
    for job_id in bad:  # read from the DLQ store: a reader of the job hash meets the same fields (readers' own fix)
        entry = wait_for(lambda job_id=job_id: store.exists(job_id) and store.get(job_id), message=f"{job_id} dead")
        [h] = entry["history"]
        assert h["kind"] == "PERMANENT" and h["error"]["type"] == "UnreadableJob", h
        assert bad[job_id] in h["error"]["message"], h
    wait_for(lambda: job_status(conn, store, good)["status"] == "finished", message="the job after them")
    assert worker.alive(), worker.log()[-3000:]
