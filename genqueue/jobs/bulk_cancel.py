"""Cancel by filter (admins): every live job of a queue matching a task, a tenant and/or a limit key — queued
(RQ's list and the fair lanes), scheduled for a retry or a delayed start, parked on a limit, running — each by
the same atomic cancel move as one job (jobs/cancel.py).

Resumable like the DLQ's bulk replay (dlq/bulk.py): the matching ids are handled in id order and the cursor
is the last id handled, so `cursor` resumes after it; running it again without a cursor is just as safe,
since a canceled job is out of every list the next run reads, and a job canceled twice answers `already`
(the move is idempotent). A job that finished meanwhile is counted `finished` and left as it is.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from redis import Redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job

from ..backend import keys
from ..backend.queues import SERIALIZER, fetch_job
from ..backend.replies import text
from ..dlq.store import DLQStore
from ..errors import Conflict, InvalidInput, NotFound
from ..limits.rules import render_key
from ..tasks.catalogue import read as read_catalogue
from ..tasks.registry import lookup, resolve_name
from ..tenants.fair import route, waiting_ids
from .cancel import cancel_job
from .enqueue import limit_key_of

BATCH = 200  # jobs read per round trip
PLACES = ("queued", "scheduled", "parked", "running")


@dataclass(frozen=True, slots=True)
class CancelFilter:
    queue: str
    task: str | None = None
    tenant: str | None = None
    limit_key: str | None = None

    def check(self) -> CancelFilter:
        if not (self.task or self.tenant or self.limit_key):
            raise InvalidInput("cancel by filter needs at least one of task, tenant or limit key")
        return self

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("task", self.task), ("tenant", self.tenant), ("limit_key", self.limit_key)) if v}


@dataclass(frozen=True, slots=True)
class Candidate:
    job_id: str
    place: str  # queued | scheduled | parked | running (where it was when read)
    task: str | None
    tenant: str  # '' for none
    limit_key: str | None


def matches(f: CancelFilter, c: Candidate) -> bool:
    """Pure: does a job (as read) match the filter? Every given field must match."""
    if f.task is not None and resolve_name(f.task) not in (c.task, resolve_name(c.task or "")):
        return False
    if f.tenant is not None and c.tenant != f.tenant:
        return False
    return f.limit_key is None or c.limit_key == f.limit_key


def after(ids: Iterable[str], cursor: str | None) -> list[str]:
    """Pure: the ids in the order they are handled (by id), after `cursor` (the last id handled)."""
    return sorted(i for i in set(ids) if cursor is None or i > cursor)


def limit_key_in_parked_list(parked_list: str | None) -> str | None:
    """Pure: the limit key of a parked list name `genqueue:limit:{<key>}:parked:<tenant>`."""
    if not parked_list or not parked_list.startswith(keys.LIMIT_PREFIX_HEAD):
        return None
    head, sep, _ = parked_list[len(keys.LIMIT_PREFIX_HEAD) :].rpartition(keys.LIMIT_PREFIX_TAIL + "parked:")
    return head if sep else None


def places(connection: Redis, queue: str) -> dict[str, str]:
    """Every live job id of the queue → where it is: waiting (RQ's list, the fair lanes, popped and not yet
    claimed), the scheduled registry, the parked lists of every known limit key, RQ's started registry."""
    found: dict[str, str] = {}
    for job_id in waiting_ids(connection, queue):
        found[job_id] = "queued"
    for member in connection.lrange(IntermediateQueue.get_intermediate_queue_key(keys.rq_queue(queue)), 0, -1):
        found.setdefault(text(member), "queued")  # popped by a worker, not yet claimed
    for raw in cast("list[bytes]", connection.zrange(keys.RQ_SCHEDULED_PREFIX + queue, 0, -1)):
        found[text(raw)] = "scheduled"
    for limit_key in sorted(text(k) for k in connection.smembers(keys.LIMITS_KNOWN)):
        pattern = glob_escape(keys.limit_prefix(limit_key)) + "parked:*"
        for parked_list in connection.scan_iter(match=pattern, count=500):
            for member in connection.lrange(parked_list, 0, -1):
                found[text(member)] = "parked"  # of any queue: filtered by origin when read
    # RQ's started registry: "<id>:<execution id>"
    for raw in cast("list[bytes]", connection.zrange(f"rq:wip:{queue}", 0, -1)):
        found[text(raw).rsplit(":", 1)[0]] = "running"
    return found


def _jobs(connection: Redis, ids: list[str]) -> list[Job | None]:
    try:
        return Job.fetch_many(ids, connection=connection, serializer=SERIALIZER)
    except Exception:  # noqa: BLE001 - one unreadable hash: read them one by one, skipping it
        out: list[Job | None] = []
        for job_id in ids:
            try:
                out.append(fetch_job(connection, job_id))
            except Exception:  # noqa: BLE001 - RQ cannot parse it: not ours to cancel by filter
                out.append(None)
        return out


def glob_escape(literal: str) -> str:
    """Pure: `literal` as a SCAN MATCH pattern matching only itself."""
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in literal)


def _rendered(connection: Redis, task: str, args, kwargs, catalogue: dict) -> str | None:
    """The job's limit key: by its task registered here, else by the live workers' catalogue (a task only
    the workers know); None when neither knows it or the key cannot be rendered."""
    try:
        if lookup(task) is not None:
            return limit_key_of(task, args, kwargs)
        if "tasks" not in catalogue:
            catalogue["tasks"] = read_catalogue(connection)
        known = catalogue["tasks"].get(resolve_name(task))
        return render_key(known.limit_key, kwargs) if known is not None and known.limit_key else None
    except Exception:  # noqa: BLE001 - a key that cannot be rendered: the job never took a slot under one
        return None


def _read(connection: Redis, queue: str, ids: list[str], where: dict[str, str]) -> list[Candidate]:
    out = []
    catalogue: dict = {}  # read once, when a job's task is not registered here
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.rq_job(job_id), "genqueue_parked")
        parked_lists = pipe.execute()
    for job, parked_list in zip(_jobs(connection, ids), parked_lists, strict=True):
        if job is None or job.origin != queue:
            continue
        try:
            task: str | None = job.func_name
            args, kwargs = job.args, job.kwargs
        except Exception:  # noqa: BLE001 - unreadable job data: matched by tenant only
            task, args, kwargs = None, (), {}
        limit_key = limit_key_in_parked_list(None if parked_list is None else text(parked_list))
        if limit_key is None and task is not None:
            limit_key = _rendered(connection, task, args, kwargs, catalogue)
        out.append(Candidate(job.id, where[job.id], task, route(job.meta)[0], limit_key))
    return out


def matching(connection: Redis, f: CancelFilter, cursor: str | None = None) -> Iterator[list[Candidate]]:
    """Batches of the matching jobs, in id order, after `cursor`."""
    where = places(connection, f.queue)
    ids = after(where, cursor)
    for start in range(0, len(ids), BATCH):
        batch = [c for c in _read(connection, f.queue, ids[start : start + BATCH], where) if matches(f, c)]
        if batch:
            yield batch


def count_matching(connection: Redis, f: CancelFilter, cursor: str | None = None) -> dict[str, int]:
    """{place: n} of the matching jobs (a dry run)."""
    counts: Counter[str] = Counter({p: 0 for p in PLACES})
    for batch in matching(connection, f, cursor):
        counts.update(c.place for c in batch)
    return dict(counts)


@dataclass
class BulkCancelResult:
    counts: dict[str, int] = field(
        default_factory=lambda: {"canceled": 0, "stopping": 0, "already": 0, "finished": 0, "missing": 0}
    )
    cursor: str | None = None  # the last id handled: resume after it
    ids: list[str] = field(default_factory=list)  # canceled (or stopping) by this call
    more: bool = False  # stopped at the caller's limit: matching jobs may remain past `cursor`

    @property
    def done(self) -> int:
        return self.counts["canceled"] + self.counts["stopping"]


def bulk_cancel(
    connection: Redis,
    store: DLQStore | None,
    f: CancelFilter,
    *,
    cursor: str | None = None,
    by: str | None = None,
    reason: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
    result: BulkCancelResult | None = None,
) -> BulkCancelResult:
    """Cancel every matching job, one atomic move each (at most `limit`: then `result.more`, and
    `result.cursor` resumes). `result` may be passed in so a caller interrupted midway still has the cursor."""
    result = result or BulkCancelResult()
    result.cursor = cursor
    started, handled = time.monotonic(), 0
    for batch in matching(connection, f.check(), cursor):
        for c in batch:
            if limit is not None and handled >= limit:
                result.more = True
                return result
            try:
                outcome = cancel_job(connection, store, c.job_id, by=by, reason=reason)
            except Conflict:
                result.counts["finished"] += 1
            except NotFound:
                result.counts["missing"] += 1
            else:
                kind = "already" if outcome.already else "stopping" if outcome.stopping else "canceled"
                result.counts[kind] += 1
                if kind != "already":
                    result.ids.append(c.job_id)
            result.cursor = c.job_id
            handled += 1
            progress(1)
            if rate:
                ahead = handled / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    return result
