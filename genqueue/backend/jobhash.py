"""The hash RQ writes for a new queued job (`Job.to_dict()` after `Queue.enqueue_job`), built without RQ's
per-job Python — Job.create, serializer resolution, zlib — which is most of the time of bulk writes
(bulk replay: ~70 %, profiled). `data` is stored uncompressed, which RQ reads (Job.restore falls back when
zlib.decompress fails). Field-by-field equality with RQ's own path is tested for both users:
tests/integration/dlq/test_bulk.py (bulk replay) and tests/integration/jobs/test_submit.py (enqueue_many)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from redis.typing import EncodableT, FieldT
from rq.job import JobStatus

EMPTY_FIELDS = (
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",  # no callbacks,
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
)  # never ran yet


def queued_job_hash(
    *,
    queue_name: str,
    func: str,
    args: list[Any],
    kwargs: dict[str, Any],
    description: str,
    timeout: int,
    result_ttl: int,
    meta: dict[str, Any],
    enqueued_at: str,
) -> dict[FieldT, EncodableT]:
    """`enqueued_at` in RQ's utcformat; it is also the creation time, as for a job enqueued when created."""
    return {
        "created_at": enqueued_at,
        "data": dumps([func, None, args, kwargs]),
        **dict.fromkeys(EMPTY_FIELDS, ""),
        "origin": queue_name,
        "description": description,
        "enqueued_at": enqueued_at,
        "timeout": timeout,
        "result_ttl": result_ttl,
        "status": JobStatus.QUEUED.value,
        "meta": dumps(meta),
    }


def dumps(value: Any) -> bytes:
    """JSON as RQ's JSONSerializer reads it; orjson, or json for what orjson refuses (ints beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()
