"""The start claim and the success move: a job is started only while it is still `queued`, and its success is
recorded only while its claim holds (guarded.py). RQ's own writes for both are recorded through RQ's methods
and sent with the check, one round trip each.

The limit key is rendered here, before the claim. A key that cannot render (a value with a space, too long)
can never succeed: the job is claimed without a limit and then failed as PERMANENT (`UnrunnableJob`) by the job
boundary (boundary.py), so it lands in the DLQ like any failure instead of escaping to the worker's loop.
"""

from __future__ import annotations

import json
import time

from rq.executions import Execution
from rq.utils import now as utcnow
from rq.worker.base import WorkerStatus

from ..backend import events
from ..backend.counters import count_in, fields_for_success, seconds_between
from ..backend.keys import cancel_request
from ..retry.meta import attempt_number
from ..support.logs import get_logger
from ..support.safe_text import describe
from .base import WorkerBase
from .boundary import DuplicateDispatch, JobParked, UnrunnableJob
from .cancel import finish_canceled
from .guarded import VETOED, recorder, run_claim, run_guarded
from .limiting import JobLimit, acquire_args, attempt_usage, limit_of, log_event, release_args
from .liveness import Claim

log = get_logger("genqueue.worker")


EVENT_RESULT_MAX = 8 * 1024  # a `finished` event carries the result when its JSON is at most this long


def finished_data(job) -> dict:
    try:
        encoded = json.dumps(job._result, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return {}
    return {"result": job._result} if len(encoded) <= EVENT_RESULT_MAX else {"result_truncated": True}


def safe_attempt(job) -> int | None:
    """The attempt number for the `started` event; None for bookkeeping that cannot be read (the boundary fails
    such a job after its claim: the claim itself must not raise)."""
    try:
        return attempt_number(job)
    except Exception:  # noqa: BLE001 - corrupt history: the event goes without a number
        return None


def rendered_limit(job) -> tuple[JobLimit | None, UnrunnableJob | None]:
    """The job's limit key, or (None, why it can never run) when its key cannot be rendered."""
    try:
        return limit_of(job), None
    except Exception as exc:  # noqa: BLE001 - any rendering error: the job's, never the worker's
        return None, UnrunnableJob(f"its limit key cannot be rendered: {describe(exc, 500)}")


class ClaimsMixin(WorkerBase):
    def prepare_execution(self, job):
        """rq.executions.prepare_execution and BaseWorker.prepare_job_execution as one claim, one round trip.

        RQ starts whatever it pops. A job id can sit in a queue twice — a stranded job pushed back while
        its first popper was only slow, a write replayed around a server crash — and RQ would run and
        complete it twice. Here the job must still be `queued` when its execution is created, and becomes
        `started` in the same script (guarded.py); the second pop finds it no longer queued and skips it.
        RQ's own writes for the start (the execution, the started registry, the worker's state, current job
        and heartbeat, the job's started fields) are recorded through RQ's methods and sent with the check;
        prepare_job_execution, which RQ calls next (in the work horse), then has nothing left to write."""
        limit, unrunnable = rendered_limit(job)
        self._limit = limit
        pipe = recorder(self.connection)
        self._flush_bookkeeping(pipe)
        try:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
        except Exception as exc:  # noqa: BLE001 - a timeout that is not a number (an old or imported job)
            heartbeat_ttl = self.job_monitoring_interval + 60
            unrunnable = unrunnable or UnrunnableJob(f"its timeout is not a number: {describe(exc)}")
        self.execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self.set_current_job_id(job.id, pipeline=pipe)
        self.set_current_job_working_time(0, pipeline=pipe)
        self.heartbeat(heartbeat_ttl, pipeline=pipe)
        job.heartbeat(utcnow(), heartbeat_ttl, pipeline=pipe)
        job.prepare_for_execution(self.name, pipeline=pipe)
        if len(self.queues) == 1:  # as RQ: with one queue the popped id leaves the intermediate list now
            pipe.lrem(self.queues[0].intermediate_queue_key, 1, job.id)
        events.add(pipe, job.id, "started", {"attempt": safe_attempt(job), "worker": self.name})
        # The limit's slot and rate token are taken in the same script, or the job is parked (limits/).
        intermediate = self._intermediate_key(job.origin)
        outcome, found, wake_at = run_claim(
            self.connection, pipe, job.key, acquire_args(limit, job, intermediate), self.execution.key
        )
        if outcome != 1:
            self.execution = None
            if outcome == 2:
                assert limit is not None
                raise JobParked(job.id, limit.key, found, wake_at)
            raise DuplicateDispatch(job.id, found or "missing")
        self._prepared_job_id = job.id
        # Read by the heartbeat thread, which keeps this claim's expiry ahead of RQ's (see liveness.py).
        self.current_claim = Claim(job.started_job_registry.key, self.execution.composite_key, self.execution.key)
        if unrunnable is not None:  # claimed, so that the boundary's failure move has a claim to end
            raise unrunnable
        return self.execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        if getattr(self, "_prepared_job_id", None) == job.id:  # written by prepare_execution's claim
            self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        """RQ writes the job's last_heartbeat here, a round trip of its own; the success or failure move that
        follows saves the whole job hash (last_heartbeat included) anyway."""
        job.ended_at = utcnow()
        job.last_heartbeat = job.ended_at

    def _ended_bookkeeping(self, pipe) -> None:
        self._flush_bookkeeping(pipe)
        self.set_current_job_id(None, pipeline=pipe)

    def handle_job_success(self, job, queue, started_job_registry):
        """BaseWorker.handle_job_success, guarded by the same claim as the failure path, in one round trip.

        RQ records a success unconditionally. If this worker was frozen (SIGSTOP, a long GC pause, a server
        outage) for longer than the liveness TTL, the sweep has already retried the job as CRASH; recording
        the success as well would complete the job twice. So the writes (RQ's own, recorded through its
        methods: counters, job hash, Result, finished registry, execution cleanup) run only while our
        execution is still in the started registry (guarded.py). Not RQ's: `Repeat` and dependents —
        genqueue jobs never repeat and are never created with dependencies."""
        execution = self.execution
        pipe = recorder(self.connection)
        self._flush_bookkeeping(pipe)
        self.increment_successful_job_count(pipeline=pipe)
        self.increment_total_working_time(job.ended_at - job.started_at, pipe)
        count_in(pipe, queue.name, fields_for_success(seconds_between(job.started_at, job.ended_at), job.func_name))
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if result_ttl != 0:
            job._handle_success(
                result_ttl,
                pipeline=pipe,
                worker_name=self.name,
                execution_id=execution.id if execution else None,
                execution_started_at=execution.created_at if execution else None,
                execution_ended_at=job.ended_at,
            )
        job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
        self.cleanup_execution(job, pipeline=pipe)
        events.add(pipe, job.id, "finished", finished_data(job))
        claim = ("member", started_job_registry.key, execution.composite_key) if execution else ("none",)
        limit = getattr(self, "_limit", None)
        settle, usage = attempt_usage(job, limit)  # the unit reservation settled, the usage counted: same script
        release = release_args(limit, job.id, settle=settle)
        ok, event = run_guarded(self.connection, pipe, claim, release, veto=cancel_request(job.id), usage=usage)
        if not ok and event == VETOED:  # canceled while it ran: the cancel's answer named `canceled` (cancel.py)
            ok = finish_canceled(
                self.connection, job, queue, execution=execution, worker_name=self.name, also=self._ended_bookkeeping
            )
            event = ""
        if ok and limit is not None:
            log_event(log, limit.key, event)
        self.current_claim = None
        if not ok:
            self.set_current_job_id(None)
            self.execution = None
            log.warning("job.success_claimed_elsewhere", job_id=job.id, queue=queue.name)
