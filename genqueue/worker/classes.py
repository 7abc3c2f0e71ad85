"""GenWorker / GenSimpleWorker: RQ workers whose failure path is genqueue's.

Why these seams (RQ 2.12, rq/worker/base.py):
- `perform_job` (in the work horse, or in-process for SimpleWorker) calls `handle_exception(job, *exc_info)`
  and then `handle_job_failure(job, queue, exc_string=...)`. Only `handle_exception` sees the exception
  object, so classification happens there and the Failure is kept for the next call.
- `monitor_work_horse` (in the parent, forking worker) calls `handle_job_failure` too when the horse died
  without reporting: SIGKILL, OOM, segfault. No Failure was recorded then, which is how we know it is a
  CRASH — not the job's fault, so it is charged to the crash budget, not the retry budget.
- Overriding `handle_job_failure` therefore covers both paths, and replaces RQ's own retry/FailedJobRegistry
  handling with one transaction (transition.move_failed_job). Jobs stopped on purpose (`rq` stop-job
  command) keep RQ's semantics.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import signal
import sys
import time
import traceback
from typing import Any

from rq import SimpleWorker, Worker, worker_registration
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.utils import now as utcnow
from rq.utils import utcformat
from rq.worker.base import WorkerStatus

from ..backend import keys
from ..backend.counters import count_in, fields_for_success, seconds_between
from ..backend.outage import OutageTooLong
from ..backend.queues import SERIALIZER, make_queue
from ..dlq.store import DLQStore
from ..retry.manager import Failure, RetryManager
from ..settings import Settings
from ..support.logs import get_logger
from ..tasks.registry import UnknownTask
from .guarded import pop, recorder, run_claim, run_guarded
from .job import GenJob
from .limiting import acquire_args, limit_of, log_event, release_args
from .liveness import WORKERS_KEY, Claim, Heartbeat
from .schedule import SCHEDULE_TICK_S, WAKE_TICK_S, DueJobMover
from .sweep import restart_grace_s, sweep_queue
from .transition import record_failure

PR_SET_PDEATHSIG = 1
BURST_PARKED_WAIT_S = 600  # a burst worker waits this long, at most, for its queues' parked jobs
log = get_logger("genqueue.worker")


class JobParked(Exception):
    """The start claim parked the job: its limit key is at its concurrency or rate, or paused."""

    def __init__(self, job_id: str, key: str, why: str, wake_at: str) -> None:
        super().__init__(f"job {job_id} parked on {key} ({why})")
        self.job_id, self.key, self.why, self.wake_at = job_id, key, why, wake_at


class DuplicateDispatch(Exception):
    """A popped job id that is no longer queued: another copy already ran or runs it."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}, not queued")
        self.status = status


class FailurePathMixin:
    """Mixed in before an RQ worker class; see the module docstring for the seams."""

    job_class = GenJob  # registered tasks only (worker/job.py)

    def __init__(self, *args: Any, settings: Settings, retry_manager: RetryManager | None = None, **kwargs: Any):
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.retry_manager = retry_manager or RetryManager.from_settings(settings)
        self._failures: dict[str, Failure] = {}
        self._pending: dict[str, Any] = {}  # worker bookkeeping sent with the next round trip
        self._stores: dict[str, DLQStore] = {}
        self.current_claim: Claim | None = None

    def store_for(self, queue_name: str) -> DLQStore:
        if queue_name not in self._stores:
            self._stores[queue_name] = DLQStore(self.connection, queue_name, retention_s=self.settings.dlq_retention_s)
        return self._stores[queue_name]

    def handle_exception(self, job, *exc_info):
        exc = exc_info[1]
        if isinstance(exc, UnknownTask):
            log.warning("task.unknown", job_id=job.id, queue=job.origin, error=str(exc)[:300])
        tb_text = "".join(traceback.format_exception(*exc_info))
        self._failures[job.id] = self.retry_manager.failure_from_exception(exc, tb_text)
        for handler in self._exc_handlers:  # user handlers still run; RQ's traceback log line does not
            if handler(job, *exc_info) is False:
                break

    def prepare_execution(self, job):
        """rq.executions.prepare_execution and BaseWorker.prepare_job_execution as one claim, one round trip.

        RQ starts whatever it pops. A job id can sit in a queue twice — a stranded job pushed back while
        its first popper was only slow, a write replayed around a server crash — and RQ would run and
        complete it twice. Here the job must still be `queued` when its execution is created, and becomes
        `started` in the same script (guarded.py); the second pop finds it no longer queued and skips it.
        RQ's own writes for the start (the execution, the started registry, the worker's state, current job
        and heartbeat, the job's started fields) are recorded through RQ's methods and sent with the check;
        prepare_job_execution, which RQ calls next (in the work horse), then has nothing left to write."""
        pipe = recorder(self.connection)
        self._flush_bookkeeping(pipe)
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        self.execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self.set_current_job_id(job.id, pipeline=pipe)
        self.set_current_job_working_time(0, pipeline=pipe)
        self.heartbeat(heartbeat_ttl, pipeline=pipe)
        job.heartbeat(utcnow(), heartbeat_ttl, pipeline=pipe)
        job.prepare_for_execution(self.name, pipeline=pipe)
        if len(self.queues) == 1:  # as RQ: with one queue the popped id leaves the intermediate list now
            pipe.lrem(self.queues[0].intermediate_queue_key, 1, job.id)
        # The limit's slot and rate token are taken in the same script, or the job is parked (limits/).
        self._limit = limit = limit_of(job)
        intermediate = self._intermediate_key(job.origin)
        outcome, found, wake_at = run_claim(
            self.connection, pipe, job.key, acquire_args(limit, job, intermediate), self.execution.key
        )
        if outcome != 1:
            self.execution = None
            if outcome == 2:
                raise JobParked(job.id, limit.key, found, wake_at)
            raise DuplicateDispatch(job.id, found or "missing")
        self._prepared_job_id = job.id
        # Read by the heartbeat thread, which keeps this claim's expiry ahead of RQ's (see liveness.py).
        self.current_claim = Claim(job.started_job_registry.key, self.execution.composite_key, self.execution.key)
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

    # -- the worker's own bookkeeping, sent with the next round trip -----------------------------------------
    def set_state(self, state, pipeline=None):
        """The `idle` writes (after each job, and again before each dequeue) ride with the next round trip
        instead of taking one each; any other state is written at once."""
        if pipeline is None and state == WorkerStatus.IDLE:
            self._state = state
            self._pending["state"] = state
            return
        super().set_state(state, pipeline=pipeline)

    def heartbeat(self, timeout=None, pipeline=None):
        """The loop's heartbeats (no timeout given) ride with the next round trip, as set_state's idle."""
        if pipeline is None and timeout is None:
            self.last_heartbeat = utcnow()
            self._pending["heartbeat"] = self.worker_ttl + 60
            return
        super().heartbeat(timeout, pipeline=pipeline)

    def set_current_job_working_time(self, current_job_working_time, pipeline=None):
        """The reset to 0 after each job (monitor_work_horse) rides with the next round trip too."""
        if pipeline is None and not current_job_working_time:
            self.current_job_working_time = 0
            self._pending["working_time"] = 0
            return
        super().set_current_job_working_time(current_job_working_time, pipeline=pipeline)

    def _pop(self, timeout):
        """Queue.dequeue_any, with the pending bookkeeping and, for one queue, the pop and the job's fetch in
        one round trip (guarded.pop); only an empty queue then waits in RQ's blocking BLMOVE."""
        if len(self._ordered_queues) == 1 and self.get_redis_server_version() >= (6, 2, 0):
            queue = self._ordered_queues[0]
            while True:
                popped = pop(
                    self.connection,
                    self._bookkeeping_pipe(),
                    queue.key,
                    queue.intermediate_queue_key,
                    self.job_class.redis_job_namespace_prefix,
                )
                if popped is None:
                    break
                job_id, data = popped
                if not data:
                    continue  # as RQ: an id whose job hash is gone is dropped
                job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
                try:
                    job.restore(data)
                except Exception as exc:  # as RQ's dequeue_any: the worker reports it with the job id
                    exc.job_id, exc.queue = job_id, queue
                    raise
                return job, queue
            if timeout is None:
                return None
        else:
            with self._bookkeeping_pipe() as pipe:
                pipe.execute()
        return self.queue_class.dequeue_any(
            self._ordered_queues,
            timeout,
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )

    def _bookkeeping_pipe(self):
        pipe = recorder(self.connection)
        self._flush_bookkeeping(pipe)
        return pipe

    def _flush_bookkeeping(self, pipe) -> None:
        pending, self._pending = self._pending, {}
        fields = {}
        if "state" in pending:
            fields["state"] = pending["state"]
        if "heartbeat" in pending:
            fields["last_heartbeat"] = utcformat(self.last_heartbeat)
        if "working_time" in pending:
            fields["current_job_working_time"] = 0
        if fields:
            pipe.hset(self.key, mapping=fields)
        if "heartbeat" in pending:
            pipe.expire(self.key, pending["heartbeat"])

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """BaseWorker.dequeue_job_and_maintain_ttl with the bookkeeping writes sent with the pop (_pop; RQ: five
        round trips before its pop); the heartbeat after the pop goes with the start claim."""
        qnames = ",".join(self.queue_names())
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + qnames)
        idle_since = utcnow()
        idle_time_left = max_idle_time
        result = None
        while True:
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                if timeout is not None and idle_time_left is not None:
                    timeout = min(timeout, idle_time_left)
                result = self._pop(timeout)
                if result is None and timeout is None and self._parked_wait():
                    continue  # burst: jobs of these queues are parked on a limit; drain them too
                if result is not None:
                    job, queue = result
                    self.reorder_queues(reference_queue=queue)
                    job.redis_server_version = self.get_redis_server_version()
                    self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
                break
            except DequeueTimeout:
                if max_idle_time is not None:
                    idle_time_left = math.ceil(max_idle_time - (utcnow() - idle_since).total_seconds())
                    if idle_time_left <= 0:
                        break
        self.heartbeat()
        return result

    def _intermediate_key(self, queue_name: str) -> str:
        """RQ's intermediate list of a queue this worker serves (no Queue object built per job)."""
        for queue in self.queues:
            if queue.name == queue_name:
                return queue.intermediate_queue_key
        return make_queue(self.connection, queue_name).intermediate_queue_key

    def _parked_wait(self) -> bool:
        """In burst mode, before leaving an empty queue: wait a wake tick if any of its jobs are parked."""
        parked = self.connection.hmget(keys.PARKED, self.queue_names())
        if not any(int(n or 0) > 0 for n in parked):
            return False
        since = self.__dict__.setdefault("_parked_since", time.monotonic())
        if time.monotonic() - since > BURST_PARKED_WAIT_S:
            log.warning("limits.burst_gave_up_waiting", worker=self.name, parked=[int(n or 0) for n in parked])
            return False
        time.sleep(WAKE_TICK_S)
        self._mover.wake()
        return True

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        except DuplicateDispatch as dup:
            self.connection.lrem(queue.intermediate_queue.key, 1, job.id)  # the copy this worker popped
            self.set_state(WorkerStatus.IDLE)
            log.warning("job.duplicate_dispatch_skipped", job_id=job.id, queue=queue.name, status=dup.status)
        except JobParked as parked:  # not a failure: nothing ran, no attempt is counted
            self.set_state(WorkerStatus.IDLE)
            log.info("limits.parked", job_id=job.id, queue=queue.name, key=parked.key, why=parked.why)
        finally:
            self.current_claim = None

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
        claim = ("member", started_job_registry.key, execution.composite_key) if execution else ("none",)
        limit = getattr(self, "_limit", None)
        ok, event = run_guarded(self.connection, pipe, claim, release_args(limit, job.id))
        if ok and limit is not None:
            log_event(log, limit.key, event)
        self.current_claim = None
        if not ok:
            self.set_current_job_id(None)
            self.execution = None
            log.warning("job.success_claimed_elsewhere", job_id=job.id, queue=queue.name)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        if self._stopped_job_id == job.id:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string)
        failure = self._failures.pop(job.id, None)
        if failure is None:  # the horse died without reaching handle_exception
            job.meta = job.get_meta(refresh=True)
            failure = self.retry_manager.crash_failure(exc_string.strip() or "work horse died")

        def bookkeeping(pipe):
            self._flush_bookkeeping(pipe)
            self.set_current_job_id(None, pipeline=pipe)
            self.increment_failed_job_count(pipeline=pipe)

        record_failure(
            self.connection,
            job,
            queue,
            failure,
            self.retry_manager,
            self.store_for(queue.name),
            execution=self.execution,
            worker_name=self.name,
            also=bookkeeping,
        )
        self.execution = None
        self.current_claim = None

    # -- liveness and abandoned jobs (see liveness.py / sweep.py) ------------------------------------------
    def live_claims(self):
        """The claims the heartbeat keeps ahead: this worker's one running job (concurrent.py: all of them)."""
        return self.current_claim

    def register_birth(self):
        super().register_birth()
        self.connection.sadd(WORKERS_KEY, self.name)

    def register_death(self):
        self._pending = {}  # the worker key is about to go: do not write it back
        self.connection.srem(WORKERS_KEY, self.name)
        super().register_death()

    def sweep(self, connection=None) -> int:
        """Retry jobs abandoned by dead workers on our queues; one sweeper per queue per interval."""
        connection = connection or self.connection
        moved = 0
        lock_ms = max(500, int(self.settings.sweep_interval_s * 1000))
        for queue in self.queues:
            if connection.set(keys.sweep_lock(queue.name), self.name, nx=True, px=lock_ms):
                moved += sweep_queue(
                    connection,
                    queue.name,
                    self.retry_manager,
                    DLQStore(connection, queue.name, retention_s=self.settings.dlq_retention_s),
                    grace_s=restart_grace_s(self.settings),
                )
        return moved

    def work(self, burst: bool = False, **kwargs):
        """RQ's work loop, with genqueue's heartbeat thread instead of RQ's scheduler process
        (see schedule.py for why).

        Raises OutageTooLong (a SystemExit, exit code 5) when the server stayed away longer than
        GENQUEUE_REDIS_OUTAGE_S; shorter outages are waited out inside each Redis command (outage.py)."""
        kwargs["with_scheduler"] = False
        self._mover = mover = DueJobMover(self.connection, self.queue_names(), self.name)
        heartbeat = Heartbeat(
            self.connection,
            self.name,
            ttl_s=self.settings.liveness_ttl_s,
            claim=self.live_claims,
            tasks=[
                (SCHEDULE_TICK_S, mover.tick),
                (WAKE_TICK_S, mover.wake),
                (self.settings.sweep_interval_s, self.sweep),
            ],
        )
        heartbeat.beat()
        if burst:
            mover.tick()  # like RQ's burst mode: bring due jobs back once before draining
            mover.wake()  # and parked jobs whose limit has room now
        heartbeat.start()
        try:
            return super().work(burst=burst, **kwargs)
        finally:
            with contextlib.suppress(OutageTooLong):  # leaving anyway: the keys expire on their own
                heartbeat.stop()
                mover.release()

    def _pubsub_exception_handler(self, exc, pubsub, pubsub_thread):
        if isinstance(exc, OutageTooLong):
            # End the command-listener thread quietly (threading's hook prints any SystemExit subclass
            # with a traceback, only SystemExit itself is silent); the main thread reports the outage.
            raise SystemExit(exc.code) from None
        return super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def teardown(self):
        try:
            super().teardown()
        except OutageTooLong:
            pass  # register_death could not reach the server; the worker key expires by itself

    def clean_registries(self):
        """BaseWorker.clean_registries without two RQ cleanups that would misjudge genqueue's jobs:

        - StartedJobRegistry.cleanup fails (FailedJobRegistry) every execution whose expiry score has
          passed. The sweep (run first) already retries abandoned jobs as CRASH, and a live genqueue worker
          keeps its current claim's score in the future, so RQ's version has nothing right left to do.
        - the intermediate-list cleanup calls handle_job_failure for a job this worker is not running; the
          sweep's requeue_stranded pushes a truly stranded job back, once.
        """
        self.sweep()
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.deferred_job_registry):
                    registry.cleanup()
                worker_registration.clean_worker_registry(queue)
                queue.release_maintenance_lock()
        self.last_cleaned_at = utcnow()


class GenWorker(FailurePathMixin, Worker):
    """Forking worker: each job runs in a work horse; a killed horse is a CRASH."""

    def main_work_horse(self, job, queue):
        # If this worker is SIGKILLed, RQ's horse (in its own process group) would run on as an orphan and
        # could finish a job the sweep has already retried. Ask the kernel to kill it with its parent.
        set_parent_death_signal(self._parent_pid)
        super().main_work_horse(job, queue)

    def fork_work_horse(self, job, queue):
        self._parent_pid = os.getpid()
        # Objects the worker already holds go to the GC's permanent generation, so a collection in the
        # work horse does not walk (and, by touching their headers, copy-on-write) the parent's heap.
        gc.freeze()
        super().fork_work_horse(job, queue)


class GenSimpleWorker(FailurePathMixin, SimpleWorker):
    """In-process worker (no fork): cheaper per job, but a crash takes the worker down with it."""


def set_parent_death_signal(parent_pid: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG). Elsewhere: no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def build_worker(
    connection,
    settings: Settings,
    queue_names: list[str],
    *,
    simple: bool = False,
    concurrency: int | None = None,
    **kwargs,
):
    queues = [make_queue(connection, name) for name in queue_names]
    if concurrency:  # up to N jobs in this process: async tasks on a loop, sync ones on threads
        from .concurrent import ConcurrentWorker

        return ConcurrentWorker(
            queues,
            connection=connection,
            settings=settings,
            concurrency=concurrency,
            shutdown_grace_s=settings.shutdown_grace_s,
            **kwargs,
        )
    cls = GenSimpleWorker if simple else GenWorker
    return cls(queues, connection=connection, settings=settings, **kwargs)
