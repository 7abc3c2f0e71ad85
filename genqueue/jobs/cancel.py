"""Cancel a job: one move decided by where the job is (lua/cancel.lua), for the CLI, the API and Python.

- queued, scheduled for a retry (or a delayed start), parked on its limit: canceled at once — out of its
  queue list, RQ's intermediate list, the scheduled registry and its limit's parked list, into RQ's
  CanceledJobRegistry (`rq info` counts it), status `canceled`, the record (who, when, why) on the job;
- running: a cancel request (backend/keys.cancel_request) the worker sees; the move that ends its attempt
  lands it in `canceled` whatever the task does (worker/cancel.py), so the answer is `canceled` here too;
- canceled already: the same answer again (idempotent); finished, failed or dead-lettered: Conflict
  ("already finished"), the job is left as it is.
A canceled job is never retried or dead-lettered, and holds no limit slot; a retry credit that bought its
current budget (`runs retry-failed`) is given back in the same move, once (tenants/credits.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources

from redis import Redis
from rq.intermediate_queue import IntermediateQueue
from rq.utils import now as utcnow
from rq.utils import utcformat

from ..backend import counters, events, keys
from ..backend.queues import fetch_job
from ..backend.scripts import registered
from ..dlq.store import DLQStore
from ..errors import Conflict, NotFound
from ..tenants.credits import GIVEN_BACK_FIELD
from ..tenants.fair import FAIR
from ..worker.cancel import CANCEL_RECORD_TTL_S, make_record
from .enqueue import check_job_id

CANCEL = FAIR + events.LUA_XADD + resources.files("genqueue.jobs").joinpath("lua", "cancel.lua").read_text()
WAS = {"queued": "queued", "scheduled": "scheduled", "deferred": "parked", "started": "running"}


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    job_id: str
    queue: str
    previous_status: str  # queued | scheduled | parked | running | canceled (asked again)
    stopping: bool  # it was running: its worker stops it (GENQUEUE_CANCEL_GRACE), then it is `canceled`
    already: bool  # canceled before this call

    @property
    def status(self) -> str:
        return "canceled"

    def as_dict(self) -> dict:
        return {
            "id": self.job_id,
            "queue": self.queue,
            "status": self.status,
            "previous_status": self.previous_status,
            "stopping": self.stopping,
            "already": self.already,
        }


def cancel_job(
    connection: Redis, store: DLQStore | None, job_id: str, *, by: str | None = None, reason: str | None = None
) -> CancelOutcome:
    """Cancel `job_id` (see the module docstring). NotFound for an unknown id, Conflict when it has finished."""
    check_job_id(job_id)
    job = fetch_job(connection, job_id)
    if job is None:
        if store is not None and store.get_raw(job_id) is not None:
            raise Conflict(f"job {job_id} already finished: it is dead-lettered")
        raise NotFound(f"no job {job_id}")
    queue = job.origin
    record = make_record(by, reason)

    outcome, status = registered(connection, CANCEL)(
        args=[
            job.key,
            job_id,
            keys.cancel_request(job_id),
            json.dumps(record),
            CANCEL_RECORD_TTL_S,
            time.time(),
            utcformat(utcnow()),
            keys.RQ_QUEUE_PREFIX,
            keys.RQ_SCHEDULED_PREFIX,
            keys.RQ_CANCELED_PREFIX,
            IntermediateQueue.get_intermediate_queue_key(keys.rq_queue(queue)),
            keys.fair(queue),
            keys.PARKED,
            keys.METRICS_PREFIX_HEAD,
            counters.CANCELED,
            keys.credits(""),
            GIVEN_BACK_FIELD,
        ]
    )
    outcome, status = outcome.decode(), status.decode()
    if outcome == "missing":
        if store is not None and store.get_raw(job_id) is not None:
            raise Conflict(f"job {job_id} already finished: it is dead-lettered")
        raise NotFound(f"no job {job_id}")
    if outcome == "finished":
        raise Conflict(f"job {job_id} already finished ({'finished' if status == 'finished' else status})")
    if outcome == "already":
        return CancelOutcome(job_id, queue, "canceled", stopping=False, already=True)
    return CancelOutcome(job_id, queue, WAS.get(status, status), stopping=outcome == "requested", already=False)
