"""genqueue/submit.py against the real server: the job hash is the one RQ itself writes, and every new job —
enqueued, scheduled, batched, a run's item — is counted once in the `enqueued` counter; an idempotent
re-enqueue, a run submitted twice, a retry or a replay is not a new job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq import Queue
from rq.job import Job

from genqueue.backend import keys
from genqueue.backend.counters import parse
from genqueue.backend.queues import SERIALIZER
from genqueue.jobs.enqueue import enqueue, enqueue_many
from genqueue.runs.store import submit
from genqueue.tenants.fair import waiting

IGNORED = {"created_at", "enqueued_at", "last_heartbeat", "data", "description", "meta"}


def enqueued(conn, q) -> int:
    return parse(conn.hgetall(keys.metrics(q)))["enqueued"]


def test_the_hash_and_queue_are_rqs_own(conn, settings):
    q = settings.queue
    ours = enqueue(conn, q, {"prompt": "a"}, job_id=f"{q}-ours").job
    theirs = Queue(q, connection=conn, serializer=SERIALIZER).enqueue_call(
        "genqueue.jobs.generate",
        args=({"prompt": "a"},),
        job_id=f"{q}-theirs",
        timeout=180,
        result_ttl=86400,
        meta={"x": 1},
        unique=True,
    )
    a, b = conn.hgetall(ours.key), conn.hgetall(theirs.key)
    assert set(a) - {b"redis_server_version"} == set(b) - {b"redis_server_version"}
    assert {k: v for k, v in a.items() if k.decode() not in IGNORED} == {
        k: v for k, v in b.items() if k.decode() not in IGNORED
    }
    assert conn.lrange(f"rq:queue:{q}", 0, -1) == [ours.id.encode(), theirs.id.encode()]
    assert conn.sismember("rq:queues", f"rq:queue:{q}")
    fetched = Job.fetch(ours.id, connection=conn, serializer=SERIALIZER)
    assert fetched.get_status() == "queued" and list(fetched.args) == [{"prompt": "a"}] and fetched.enqueued_at


def test_every_new_job_is_counted_once(conn, settings):
    q = settings.queue
    enqueue(conn, q, {"prompt": "a"})
    assert enqueue(conn, q, {"prompt": "b"}, job_id=f"{q}-b").created
    assert not enqueue(conn, q, {"prompt": "b"}, job_id=f"{q}-b").created  # idempotent: the same job
    later = enqueue(conn, q, {"prompt": "c"}, in_=timedelta(hours=1)).job
    score = conn.zscore(f"rq:scheduled:{q}", later.id)
    assert abs(score - (datetime.now(UTC) + timedelta(hours=1)).timestamp()) < 5
    assert later.get_status() == "scheduled" and later.id.encode() not in conn.lrange(f"rq:queue:{q}", 0, -1)
    assert enqueued(conn, q) == 3
    enqueue_many(conn, q, [{"prompt": f"m{i}"} for i in range(5)], batch=2)
    assert enqueued(conn, q) == 8
    payloads = [{"prompt": f"r{i}"} for i in range(4)]
    submit(conn, q, payloads, ttl_s=3600, run_id=f"{q}-run")
    submit(conn, q, payloads, ttl_s=3600, run_id=f"{q}-run")  # the same run again: nothing new
    assert enqueued(conn, q) == 12 == waiting(conn, [q])[q] + conn.zcard(f"rq:scheduled:{q}")


def test_enqueue_many_writes_the_jobs_rqs_enqueue_many_would(conn, settings):
    """jobhash.queued_job_hash against RQ: field by field (timestamps aside; `data` compared deserialized,
    since ours is not zlib-compressed), and RQ reads ours back."""
    import json
    import zlib

    from genqueue.backend.queues import DEFAULT_JOB_TIMEOUT_S, RESULT_TTL_S
    from genqueue.retry.meta import new_meta
    from genqueue.tasks.generate import JOB_FUNC, describe

    q = settings.queue
    payload = {"prompt": "same", "n": 2**70}
    [ours] = enqueue_many(conn, q, [payload], max_retries=2)
    [theirs] = Queue(q, connection=conn, serializer=SERIALIZER).enqueue_many(
        [
            Queue.prepare_data(
                JOB_FUNC,
                (payload,),
                timeout=DEFAULT_JOB_TIMEOUT_S,
                result_ttl=RESULT_TTL_S,
                description=describe(payload),
                meta=new_meta(2),
            )
        ]
    )
    a, b = conn.hgetall(ours.key), conn.hgetall(theirs.key)
    assert set(a) == set(b)
    for field in set(a) - {b"created_at", b"enqueued_at", b"data"}:
        assert a[field] == b[field] or json.loads(a[field]) == json.loads(b[field]), field
    assert json.loads(a[b"data"]) == json.loads(zlib.decompress(b[b"data"]))
    job = Job.fetch(ours.id, connection=conn, serializer=SERIALIZER)
    assert job.get_status() == "queued" and list(job.args) == [payload] and job.enqueued_at is not None
    assert job.meta["genqueue"]["max_retries"] == 2 and job.timeout == DEFAULT_JOB_TIMEOUT_S
    assert conn.lrange(f"rq:queue:{q}", 0, -1) == [ours.id.encode(), theirs.id.encode()]
