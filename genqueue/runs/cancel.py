"""Cancel a run: every item not yet finished, each by its own atomic move (jobs/cancel.py).

Items are canceled one by one, so a run canceled while its workers run ends with every item in exactly one
place: those canceled here (at once, or stopped by their worker), and those that finished or were
dead-lettered first. Calling it again cancels what is left and changes nothing else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from redis import Redis

from ..dlq.store import DLQStore
from ..errors import Conflict, NotFound
from ..jobs.cancel import cancel_job
from .rules import check_run_id
from .store import load_run


@dataclass(frozen=True, slots=True)
class RunCancel:
    run_id: str
    queue: str
    tenant: str | None
    counts: dict[str, int] = field(default_factory=dict)  # canceled, stopping, already, finished, missing

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "queue": self.queue, **self.counts}


def run_tenant(connection: Redis, run_id: str) -> str | None:
    return load_run(connection, check_run_id(run_id)).tenant


def cancel_run(
    connection: Redis, run_id: str, *, ttl_s: int, by: str | None = None, reason: str | None = None
) -> RunCancel:
    run = load_run(connection, check_run_id(run_id))
    store = DLQStore(connection, run.queue, retention_s=ttl_s)
    counts: Counter[str] = Counter({"canceled": 0, "stopping": 0, "already": 0, "finished": 0, "missing": 0})
    for job_id in run.item_ids():
        try:
            outcome = cancel_job(connection, store, job_id, by=by, reason=reason or f"run {run_id} canceled")
        except Conflict:
            counts["finished"] += 1
            continue
        except NotFound:
            counts["missing"] += 1
            continue
        counts["already" if outcome.already else "stopping" if outcome.stopping else "canceled"] += 1
    return RunCancel(run.run_id, run.queue, run.tenant, dict(counts))
