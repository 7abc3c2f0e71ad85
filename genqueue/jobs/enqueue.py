"""Enqueue generation jobs, idempotently when the caller names the job id.

With an explicit job id, a second enqueue while the first job is queued, scheduled or running returns the
existing job (created=False). RQ's own `unique=True` (an atomic "hash must not exist" Lua check) makes the
create step race-free; a finished or failed job with the same id is replaced, and a dead-lettered one has
no job hash left (its DLQ entry stays until replayed or deleted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.exceptions import WatchError
from rq.exceptions import DuplicateJobError
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.utils import now as utcnow
from rq.utils import utcformat

from ..backend.counters import count_in, fields_for_enqueued
from ..backend.jobhash import queued_job_hash
from ..backend.queues import DEFAULT_JOB_TIMEOUT_S, RESULT_TTL_S, SERIALIZER, fetch_job, make_queue
from ..errors import Conflict, InvalidId, InvalidInput
from ..retry.meta import new_meta
from ..tasks.generate import JOB_FUNC, describe, validate_payload
from .submit import submit

LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
MAX_ID_LEN = 200
ENQUEUE_BATCH = 1000  # jobs per MULTI/EXEC in enqueue_many


@dataclass(frozen=True)
class EnqueueResult:
    job: Job
    created: bool


def check_job_id(job_id: str) -> str:
    """RQ 2.12's rule (letters, digits, _ and -; ':' separates job and execution ids, and RQ raises a bare
    ValueError deep in create_job otherwise), plus a length cap."""
    if not job_id or len(job_id) > MAX_ID_LEN or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidId(f"invalid job id {job_id!r}: 1-{MAX_ID_LEN} letters, digits, _ or -")
    return job_id


def enqueue(
    connection: Redis,
    queue_name: str,
    payload: dict[str, Any],
    *,
    job_id: str | None = None,
    max_retries: int | None = None,
    at: datetime | None = None,
    in_: timedelta | None = None,
    timeout: int | None = None,
    meta: dict | None = None,
    policy: dict[str, dict] | None = None,
    tenant: str | None = None,
) -> EnqueueResult:
    """Enqueue `payload`; `policy` overrides this job's retry policy per kind, e.g. {"TRANSIENT": {"max": 2}}."""
    validate_payload(payload)
    meta = meta or new_meta(max_retries, tenant=tenant)
    if policy:
        check_policy(policy)
        meta["genqueue"]["policy"] = policy
    if job_id is not None:
        check_job_id(job_id)
    if max_retries is not None and max_retries < 0:
        raise InvalidInput("max_retries must be 0 or more")
    when = at or (datetime.now(timezone.utc) + in_ if in_ else None)
    queue = make_queue(connection, queue_name)

    def build() -> Job:
        return queue.create_job(
            JOB_FUNC,
            args=(payload,),
            job_id=job_id,
            timeout=timeout or DEFAULT_JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            meta=meta,
            description=describe(payload),
            status=JobStatus.SCHEDULED if when else JobStatus.QUEUED,
        )

    if job_id is None:
        job = build()
        return EnqueueResult(submit(queue, job, when, unique=False), True)

    for _ in range(5):
        try:
            return EnqueueResult(submit(queue, build(), when, unique=True), True)
        except DuplicateJobError:
            existing = fetch_job(connection, job_id)
            if existing is None:
                continue  # it expired between the check and the fetch: try again
            if existing.get_status(refresh=False) in LIVE_STATUSES:
                return EnqueueResult(existing, False)
            _delete_if_done(connection, existing)
    raise Conflict(f"job {job_id} keeps changing state; try again")


def enqueue_many(
    connection: Redis,
    queue_name: str,
    payloads: Sequence[dict[str, Any]],
    *,
    max_retries: int | None = None,
    timeout: int | None = None,
    batch: int = ENQUEUE_BATCH,
) -> list[Job]:
    """Enqueue many payloads with generated job ids: one MULTI/EXEC round trip per `batch` jobs, every
    payload validated before any is enqueued. Generated ids make it not idempotent; a batch that must
    survive being submitted twice is a run (genqueue.runs.submit). The job hashes are the ones RQ's
    Queue.enqueue_many writes (jobhash.py), built without RQ's per-job Python."""
    if max_retries is not None and max_retries < 0:
        raise InvalidInput("max_retries must be 0 or more")
    for payload in payloads:
        validate_payload(payload)
    queue = make_queue(connection, queue_name)
    ids: list[str] = []
    for start in range(0, len(payloads), batch):
        enqueued_at = utcformat(utcnow())
        chunk = [(str(uuid4()), payload) for payload in payloads[start:start + batch]]
        with connection.pipeline() as pipe:
            pipe.sadd(queue.redis_queues_keys, queue.key)
            for job_id, payload in chunk:
                pipe.hset(Job.key_for(job_id), mapping=queued_job_hash(
                    queue_name=queue_name, func=JOB_FUNC, args=[payload], kwargs={}, description=describe(payload),
                    timeout=timeout or DEFAULT_JOB_TIMEOUT_S, result_ttl=RESULT_TTL_S, meta=new_meta(max_retries),
                    enqueued_at=enqueued_at))
            if chunk:
                pipe.rpush(queue.key, *(job_id for job_id, _ in chunk))
            count_in(pipe, queue_name, fields_for_enqueued(len(chunk)))
            pipe.execute()
        ids += [job_id for job_id, _ in chunk]
    return [Job(job_id, connection=connection, serializer=SERIALIZER) for job_id in ids]


def check_policy(policy) -> None:
    from ..retry.policy import merged_policies

    if not isinstance(policy, dict) or not all(isinstance(v, dict) for v in policy.values()):
        raise InvalidInput('policy must be an object of kinds, e.g. {"TRANSIENT": {"max": 2, "base": 1}}')
    try:
        merged_policies(policy)
    except ValueError as exc:
        raise InvalidInput(f"policy: {exc}") from None


def _delete_if_done(connection: Redis, job: Job) -> None:
    """Drop a finished/failed job's hash so its id can be reused, unless it changed state meanwhile."""
    with connection.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            status = pipe.hget(job.key, "status")
            if status is None or status.decode() in {s.value for s in LIVE_STATUSES}:
                return
            pipe.multi()
            job.delete(pipeline=pipe, remove_from_queue=False)
            pipe.execute()
        except WatchError:
            return
