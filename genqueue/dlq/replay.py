"""Replay a DLQ entry: one WATCH/MULTI that deletes the entry and enqueues the same job id with a fresh
retry budget. Two admins replaying one entry: one EXEC wins, the other sees the entry gone (exit 4)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT
from rq.job import JobStatus

from ..backend import durable, events
from ..backend.jobhash import queued_job_hash
from ..backend.queues import RESULT_TTL_S, make_queue
from ..backend.replies import text
from ..errors import Conflict, InvalidInput, NotFound
from ..retry.meta import new_meta
from ..tasks.generate import describe
from ..tenants.fair import adopt
from .entry import check_entry, decode
from .store import DLQStore

DEFAULT_REPLAY_CAP = 3
REFUSED = "replay_refused:"  # stats-hash field prefix; successes are counted in `replayed`
LIVE = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.STARTED.value, JobStatus.DEFERRED.value}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def replay(
    store: DLQStore,
    job_id: str,
    *,
    force: bool = False,
    replay_cap: int = DEFAULT_REPLAY_CAP,
    payload_patch: dict | None = None,
    acknowledge: bool = True,
):
    """Re-enqueue the entry's job; returns the new RQ job. NotFound/Conflict when it must not happen.
    `payload_patch` (a JSON merge patch) changes the payload of the replayed job, not the stored entry.
    With GENQUEUE_WAIT_REPLICAS, the replay is acknowledged once the replicas have it (NotDurable if not in
    time); a retry of the same replay finds the job live and answers Conflict "already replayed" once the
    replicas have that, never replaying twice. `acknowledge=False`: nobody is told (the scheduler's own)."""
    connection = store.connection
    queue = make_queue(connection, store.keys.queue)
    entry_key = store.keys.entry(job_id)
    job_key = queue.job_class.key_for(job_id)
    seen = False
    with connection.pipeline() as pipe:
        for _ in range(10):
            try:
                pipe.watch(entry_key, job_key)
                raw = pipe.get(entry_key)
                if raw is None:
                    if seen:
                        raise refused(
                            store, "gone", Conflict(f"DLQ entry {job_id} was just replayed or deleted by someone else")
                        )
                    status = pipe.hget(job_key, "status")
                    if status is not None:
                        if acknowledge and text(status) in LIVE:  # a retry after NotDurable: replicated now?
                            durable.confirm(connection, f"replay of {job_id}")
                        raise refused(
                            store,
                            "gone",
                            Conflict(f"job {job_id} is not in the DLQ (already replayed? it is {text(status)})"),
                        )
                    raise refused(store, "not_found", NotFound(f"no DLQ entry {job_id} in {store.keys.dlq_name}"))
                seen = True
                entry = check_entry(decode(raw, job_id))  # stored before imports were checked: refused, one line
                why = blocked(pipe, job_key, entry, force=force, replay_cap=replay_cap)
                if why is not None:
                    raise refused(store, why[0], Conflict(why[1]))
                if payload_patch:
                    entry = patched(entry, payload_patch)
                job = job_from_entry(queue, entry)
                pipe.multi()
                store.remove_in(pipe, job_id, entry)
                queue.enqueue_job(job, pipeline=pipe)
                adopt(pipe, queue.name, [job.id])
                events.add(pipe, job_id, "replayed", {"from": "dlq", "patched": bool(payload_patch)})
                pipe.hincrby(store.keys.stats, "replayed", 1)
                pipe.execute()
                if acknowledge:  # WAIT is not honoured inside MULTI: one more round trip when it is on
                    durable.confirm(connection, f"replay of {job_id}")
                return job
            except WatchError:
                continue
    raise Conflict(f"DLQ entry {job_id} keeps changing; try again")


def blocked(pipe, job_key: str, entry: dict[str, Any], *, force: bool, replay_cap: int) -> tuple[str, str] | None:
    """(outcome, message) when this entry must not be replayed now, else None."""
    job_id = entry["job_id"]
    replays = int(entry.get("replays") or 0)
    if replays >= replay_cap and not force:
        return (
            "max_replays",
            f"max attempts reached: {job_id} was replayed {replays} times (cap {replay_cap}); --force overrides",
        )
    status = pipe.hget(job_key, "status")
    if status is None:
        return None
    status = status.decode()
    if status == JobStatus.FINISHED.value:
        return "finished", f"job {job_id} has since finished; not replaying it"
    if status in LIVE:
        return "live", f"job {job_id} is {status} already; not replaying it"
    return None


def refused(store: DLQStore, outcome: str, exc: Exception) -> Exception:
    """Count a replay that did not happen (`genqueue_dlq_replays_total{outcome}`), then let it be raised."""
    store.connection.hincrby(store.keys.stats, f"{REFUSED}{outcome}", 1)
    return exc


def patched(entry: dict[str, Any], payload_patch: dict) -> dict[str, Any]:
    """The entry with its payload merge-patched and re-validated: the generate task's payload (args[0]), or
    a task's keyword arguments (checked against its signature where the task is registered here)."""
    from ..tasks.generate import validate_payload
    from ..tasks.registry import bind, lookup

    spec = lookup(entry.get("func"))
    if entry.get("args") or (spec is not None and spec.positional):
        args = list(entry.get("args") or [{}])
        args[0] = validate_payload(merge_patch(args[0], payload_patch))
        return {**entry, "args": args}
    kwargs = merge_patch(entry.get("kwargs") or {}, payload_patch)
    if not isinstance(kwargs, dict):
        raise InvalidInput("the patched kwargs must be a JSON object")
    if spec is not None:
        bind(spec, (), kwargs)
    return {**entry, "kwargs": kwargs}


def job_from_entry(queue, entry: dict[str, Any]):
    fields = job_from_entry_fields(entry)
    return queue.create_job(
        entry["func"],
        args=fields["args"],
        kwargs=fields["kwargs"],
        job_id=entry["job_id"],
        timeout=fields["timeout"],
        result_ttl=RESULT_TTL_S,
        meta=fields["meta"],
        description=fields["description"],
    )


def job_hash(
    queue_name: str, entry: dict[str, Any], enqueued_at: str, *, default_timeout: int
) -> dict[FieldT, EncodableT]:
    """The hash queue.enqueue_job(job_from_entry(entry)) writes, without RQ's per-job Python (jobhash.py)."""
    job = job_from_entry_fields(entry)
    return queued_job_hash(
        queue_name=queue_name,
        func=entry["func"],
        args=job["args"],
        kwargs=job["kwargs"],
        description=job["description"],
        result_ttl=RESULT_TTL_S,
        meta=job["meta"],
        timeout=job["timeout"] if job["timeout"] is not None else default_timeout,
        enqueued_at=enqueued_at,
    )


def job_from_entry_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """What job_from_entry passes to create_job, as plain values."""
    options = entry.get("options") or {}
    args = entry.get("args") or []
    return {
        "args": args,
        "kwargs": entry.get("kwargs") or {},
        "timeout": options.get("timeout"),
        "description": describe(args[0]) if args else f"{entry.get('func')}()",
        "meta": new_meta(
            options.get("max_retries"),
            replays=int(entry.get("replays") or 0) + 1,
            replayed_from=f"{entry['job_id']}@{entry['failed_at']}",
            history=entry.get("history") or [],
            tenant=options.get("tenant"),
        ),
    }
