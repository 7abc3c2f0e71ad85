"""A canceled running job, from the worker's side: the request it sees, the grace, the stop, and the move that
lands it in `canceled`.

A cancel accepted for a running job (jobs/cancel.py) is a request key (backend/keys.cancel_request). From then
on the job can only end `canceled`: every move that ends an attempt — success, retry, dead-letter, the
sweep's — checks the key in the same script or transaction (guarded.py's veto, transition.py) and, when it is
there, this module's `finish_canceled` runs instead: the claim-checked move that takes the job out of the
started registry, gives its limit slot back and puts it in RQ's CanceledJobRegistry, with who, when and why
in its history, and a retry credit that bought the job's budget given back. So a cancel racing a success
has one outcome, the one its answer named.

The task sees the request (`genqueue.current().cancelled`, tasks/context.py); the worker's heartbeat thread
polls for it (CancelWatch, every CANCEL_POLL_S) and, past GENQUEUE_CANCEL_GRACE, stops the job: the forking
worker kills its work horse; the concurrent worker cancels an async job's task at once and raises JobCanceled
in a sync job's thread; `--simple` can only wait for the task (cooperative, best effort).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus
from rq.utils import now as utcnow

from ..backend import counters, events, keys
from ..backend.counters import count_in
from ..retry.meta import gq
from ..support.logs import get_logger
from ..support.safe_text import describe
from ..tenants.credits import GIVEN_BACK_FIELD, credit_to_give_back
from .cancel_hook import run_on_cancel
from .guarded import recorder, run_guarded
from .limiting import attempt_usage, limit_or_none, log_event, release_args

log = get_logger("genqueue.worker")
CANCEL_POLL_S = 0.5  # how often a worker looks for cancel requests of its running jobs
CANCEL_RECORD_TTL_S = 7 * 24 * 3600  # a canceled job (and a pending request) stays inspectable this long
CANCEL_FIELD = "genqueue_cancel"  # the job hash field holding the cancel record (JSON: by, at, reason)


class JobCanceled(Exception):
    """The job was canceled: raised in a canceled sync job's thread past the grace (concurrent worker), and a
    task may raise it itself on seeing `genqueue.current().cancelled`. Never retried: the job ends `canceled`."""


class CancelVetoed(Exception):
    """A move that ends an attempt found the job's cancel request: the job is to be canceled instead."""


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_record(by: str | None, reason: str | None) -> dict[str, Any]:
    return {"by": by or "unknown", "at": iso_now(), "reason": reason}


def read_request(connection: Redis, job_id: str) -> dict[str, Any] | None:
    raw = connection.get(keys.cancel_request(job_id))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"by": "unknown", "at": iso_now(), "reason": None}


def _text_or_none(raw: Any) -> str | None:
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


def finish_canceled(
    connection: Redis,
    job: Job,
    queue,
    *,
    execution=None,
    registry_claim: tuple[str, str] | None = None,
    worker_name: str,
    also: Callable[[Any], None] | None = None,
) -> bool:
    """The move that ends a claimed job's attempt in `canceled` (one guarded script): out of the started
    registry (or `registry_claim`'s) and the intermediate list, its limit slot back, into RQ's
    CanceledJobRegistry, the cancel record in its history. False when the claim was already gone."""
    record = read_request(connection, job.id) or make_record(None, None)
    pipe = recorder(connection)
    if execution is not None:
        execution.delete(job=job, pipeline=pipe)
    if registry_claim is not None:
        pipe.zrem(*registry_claim)
    pipe.lrem(queue.intermediate_queue.key, 0, job.id)
    meta = gq(job)
    give_back = credit_to_give_back(meta["history"], _text_or_none(connection.hget(job.key, GIVEN_BACK_FIELD)))
    if give_back is not None:  # the credit that bought this budget: back in this same move, once
        tenant, marker = give_back
        if connection.exists(keys.credits(tenant)):  # absent: the tenant is unlimited now
            pipe.incrby(keys.credits(tenant), 1)
        pipe.hset(job.key, GIVEN_BACK_FIELD, marker)
    meta["history"].append({"action": "canceled", **record, "worker": worker_name})
    job._status = JobStatus.CANCELED
    job.ended_at = job.ended_at or utcnow()
    job.save(pipeline=pipe)
    pipe.hset(job.key, CANCEL_FIELD, json.dumps(record))
    pipe.delete(keys.cancel_request(job.id))  # the record is on the job now; a later manual retry runs afresh
    pipe.expire(job.key, CANCEL_RECORD_TTL_S)
    pipe.zadd(keys.rq_canceled(queue.name), {job.id: time.time()})
    count_in(pipe, queue.name, {counters.CANCELED: 1})
    events.add(pipe, job.id, "canceled", {"by": record.get("by"), "reason": record.get("reason"), "was": "running"})
    if also is not None:
        also(pipe)
    if execution is not None:
        claim: tuple[str, ...] = ("member", queue.started_job_registry.key, execution.composite_key)
    elif registry_claim is not None:
        claim = ("member", *registry_claim)
    else:
        claim = ("none",)
    limit = limit_or_none(job)
    settle, usage = attempt_usage(job, limit, crashed=True)  # only what the task reported before it stopped
    ok, event = run_guarded(connection, pipe, claim, release_args(limit, job.id, 0, "", settle), usage=usage)
    if ok:
        if limit is not None:
            log_event(log, limit.key, event)
        log.info("job.canceled", job_id=job.id, queue=queue.name, by=record.get("by"), reason=record.get("reason"))
        run_on_cancel(connection, job.id)  # the task's on_cancel hook, unless the watch ran it already
    else:
        log.warning("job.cancel_claimed_elsewhere", job_id=job.id, queue=queue.name)
    return ok


class CancelWatch:
    """A heartbeat duty: the cancel requests of this worker's running jobs, and the stop past the grace.

    `running()` gives the running job ids; `seen(job_id)` is called once when a request is first seen, and
    `stop(job_id)` once when the grace has passed with the job still running; `hook(job_id)` (the task's
    on_cancel, cancel_hook.py) once with `seen`."""

    def __init__(
        self,
        running: Callable[[], list[str]],
        seen: Callable[[str], None],
        stop: Callable[[str], None],
        grace_s: float,
        hook: Callable[[str], Any] | None = None,
    ) -> None:
        self.running, self.seen, self.stop, self.grace_s, self.hook = running, seen, stop, grace_s, hook
        self._first: dict[str, float] = {}
        self._stopped: set[str] = set()

    def tick(self, connection: Redis) -> None:
        ids = self.running()
        self._first = {k: v for k, v in self._first.items() if k in ids}
        self._stopped &= set(ids)
        if not ids:
            return
        with connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(keys.cancel_request(job_id))
            found = pipe.execute()
        now = time.monotonic()
        for job_id, exists in zip(ids, found, strict=True):
            if not exists:
                continue
            if job_id not in self._first:
                self._first[job_id] = now
                log.info("job.cancel_requested", job_id=job_id, grace_s=self.grace_s)
                self._call(self.seen, job_id)
                if self.hook is not None:
                    self._call(self.hook, job_id)
            elif job_id not in self._stopped and now - self._first[job_id] >= self.grace_s:
                self._stopped.add(job_id)
                log.warning("job.cancel_grace_over", job_id=job_id, grace_s=self.grace_s)
                self._call(self.stop, job_id)

    @staticmethod
    def _call(fn: Callable[[str], Any], job_id: str) -> None:
        try:
            fn(job_id)
        except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive a failed stop
            log.warning("job.cancel_stop_failed", job_id=job_id, error=describe(exc))


def job_id_of(claim) -> str | None:
    """The job id in a claim's started-registry member (`<job id>:<execution id>`)."""
    member = getattr(claim, "member", None)
    if not member:
        return None
    text = member.decode() if isinstance(member, bytes) else str(member)
    return text.rsplit(":", 1)[0]
