"""genqueue/worker/guarded.py against the real server: RQ's own writes, recorded through its `pipeline=`
parameters, run only while the claim holds, all or nothing, in one script."""

from __future__ import annotations

from rq.job import JobStatus

from genqueue.backend.queues import make_queue
from genqueue.jobs.enqueue import enqueue
from genqueue.worker.guarded import recorder, run_guarded


def test_writes_run_only_while_the_claim_holds(conn, settings):
    conn.zadd("claims", {"mine": 1})
    pipe = recorder(conn)
    pipe.hset("h", mapping={"a": 1, "b": "x y"})
    pipe.expire("h", 100)
    pipe.zrem("claims", "mine")
    assert run_guarded(conn, pipe, ("member", "claims", "mine")) == (True, "")
    assert conn.hgetall("h") == {b"a": b"1", b"b": b"x y"} and 0 < conn.ttl("h") <= 100
    assert conn.zscore("claims", "mine") is None

    pipe = recorder(conn)
    pipe.hset("h", "a", 2)
    assert run_guarded(conn, pipe, ("member", "claims", "mine")) == (False, "")  # the claim is gone
    assert conn.hget("h", "a") == b"1" and not pipe.command_stack
    conn.delete("h", "claims")


def test_rqs_enqueue_job_records_into_it_and_a_field_claim_reports_what_it_found(conn, settings):
    q = settings.queue
    job = enqueue(conn, q, {"prompt": "p"}).job
    queue = make_queue(conn, q)
    pipe = recorder(conn)
    queue.enqueue_job(job, pipeline=pipe)  # RQ calls pipe.multi() on pipelines it is given
    ok, found = run_guarded(conn, pipe, ("field", job.key, "status", JobStatus.STARTED.value))
    assert (ok, found) == (False, "queued") and conn.llen(f"rq:queue:{q}") == 1
    pipe = recorder(conn)
    queue.enqueue_job(job, pipeline=pipe)
    assert run_guarded(conn, pipe, ("field", job.key, "status", "queued")) == (True, "")
    assert conn.lrange(f"rq:queue:{q}", 0, -1) == [job.id.encode()] * 2


def test_pop_runs_the_bookkeeping_moves_the_id_and_returns_the_hash(conn, settings):
    from genqueue.worker.guarded import pop

    q = settings.queue
    queue = make_queue(conn, q)
    job = enqueue(conn, q, {"prompt": "p"}).job
    conn.rpush(queue.key, "no-such-job")
    pipe = recorder(conn)
    pipe.hset(f"{q}-worker", "state", "idle")
    job_id, data = pop(conn, pipe, q, queue.intermediate_queue_key, "rq:job:")
    assert job_id == job.id and data[b"status"] == b"queued" and data == conn.hgetall(job.key)
    assert conn.hget(f"{q}-worker", "state") == b"idle"
    assert conn.lrange(queue.intermediate_queue_key, 0, -1) == [job.id.encode()]
    assert pop(conn, recorder(conn), q, queue.intermediate_queue_key, "rq:job:") == ("no-such-job", {})
    assert pop(conn, recorder(conn), q, queue.intermediate_queue_key, "rq:job:") is None
    conn.delete(f"{q}-worker")


def test_a_start_claim_sent_twice_is_one_start_not_a_duplicate(conn, settings):
    """The server can die after running a script and before answering; PatientRetry then sends the same
    claim again. The second run finds the job started by the first — by this claim's own execution — and
    reports success (1, "replayed"), not a duplicate dispatch that would strand the job in `started`."""
    from genqueue.worker.guarded import run_claim

    job = enqueue(conn, settings.queue, {"prompt": "p"}).job
    execution_key = f"rq:execution:{job.id}:e1"

    def claim(execution):
        pipe = recorder(conn)
        pipe.hset(execution_key, "id", "e1")
        pipe.hset(job.key, "status", "started")
        return run_claim(conn, pipe, job.key, None, execution)

    assert claim(execution_key) == (1, "", "")
    assert claim(execution_key) == (1, "replayed", "")  # the same claim, again
    assert claim(f"rq:execution:{job.id}:e2") == (0, "started", "")  # another claim: a real duplicate
    conn.delete(execution_key)
