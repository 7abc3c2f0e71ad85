"""A worker's life around its jobs: start and stop, the heartbeat thread and the periodic duties it runs
(liveness.Heartbeat; the due-job mover and waker, schedule.DueJobMover; the sweep of abandoned jobs,
sweep.sweep_queue), RQ's registry maintenance, and the command channel (pub/sub) that must never hold up a stop.

Why the command channel is replaced: RQ listens on it from redis-py's PubSubWorkerThread, started with
`sleep_time=60`, and at teardown sends UNSUBSCRIBE, then `stop()`s the thread, which joins it. When the
UNSUBSCRIBE reply wakes the thread before the stop flag is cleared, the thread goes back into a 60 s
`get_message` and the worker takes up to a minute to exit (a supervisor then SIGKILLs it, and its jobs come back
as CRASH retries). Here the thread polls every PUBSUB_POLL_S, and a stop clears its flag first, wakes it with a
command it ignores (so a stop does not wait out the poll), waits at most PUBSUB_STOP_WAIT_S for it, and closes
the connection (which ends the subscription): an idle worker of any class exits well within 2 s of SIGTERM,
whatever its pub/sub thread is doing.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable
from typing import Any

from rq import worker_registration
from rq.exceptions import StopRequested
from rq.utils import now as utcnow

from ..backend import keys
from ..backend.outage import OutageTooLong
from ..dlq.store import DLQStore
from ..support.logs import get_logger
from ..support.safe_text import describe
from .base import WorkerBase
from .cancel import CANCEL_POLL_S, CancelWatch, job_id_of
from .cancel_hook import run_on_cancel_in_thread
from .liveness import WORKERS_KEY, Heartbeat
from .schedule import SCHEDULE_TICK_S, WAKE_TICK_S, DueJobMover
from .sweep import restart_grace_s, sweep_queue

PUBSUB_POLL_S = 0.25  # the command channel's thread checks its stop flag this often
WAKE_PAYLOAD = '{"command": "noop"}'  # RQ's handle_command ignores a command it does not know
PUBSUB_STOP_WAIT_S = 1.0  # at most this long for it at a stop (a command being handled); then it is left
log = get_logger("genqueue.worker")
# A worker's exit statuses (cli/worker.py; README "Exit statuses"): 0 a clean stop (signal, --burst done), 2 a
# fatal configuration error at start, 5 the server away past GENQUEUE_REDIS_OUTAGE_S, and these two:
EXIT_RETIRED = 6  # the worker retired itself (the concurrent worker: too many stuck threads); restart it
EXIT_INTERNAL = 70  # an unexpected error in the worker's own loop (not in a job: the job boundary has those)
LOOP_CALLS = ("check_for_suspension", "run_maintenance_tasks", "dequeue_job_and_maintain_ttl", "execute_job")


class WorkerLoopError(SystemExit):
    """An exception escaped the worker's own loop: the worker stops with EXIT_INTERNAL, one log line."""

    def __init__(self, worker_name: str, exc: BaseException) -> None:
        super().__init__(EXIT_INTERNAL)
        self.message = f"worker {worker_name} stopping on an unexpected error: {describe(exc, 500)}"


class DutiesMixin(WorkerBase):
    loop_error: BaseException | None = None
    exit_status: int = 0  # set by a worker that retires itself (EXIT_RETIRED)
    # More periodic duties for the heartbeat thread, (interval s, call), handed in by whoever builds the worker
    # (cli/worker.py: the webhook relay, for a worker that serves the webhook queue).
    extra_duties: tuple[tuple[float, Callable[..., Any]], ...] = ()

    def _guard_loop(self) -> None:
        """RQ's loop logs any exception from the calls it makes ("found an unhandled exception, quitting") and
        returns as if it had finished: the process then exits 0 and its supervisor does not restart it. Each of
        those calls is wrapped: its exception is kept and turned into a stop, and `work` raises WorkerLoopError."""
        for name in LOOP_CALLS:
            setattr(self, name, self._kept(getattr(self, name)))

    def _kept(self, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def kept(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except (StopRequested, SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop_error = exc
                raise StopRequested() from exc

        return kept

    def live_claims(self):
        """The claims the heartbeat keeps ahead: this worker's one running job (concurrent.py: all of them)."""
        return self.current_claim

    # -- cancel requests of running jobs (cancel.py): the heartbeat's CancelWatch calls these -----------------
    def running_job_ids(self) -> list[str]:
        claims = self.live_claims()
        claims = [] if claims is None else [claims] if not isinstance(claims, list) else claims
        return [job_id for job_id in (job_id_of(c) for c in claims) if job_id]

    def cancel_seen(self, job_id: str) -> None:
        """A cancel request for a running job, first seen: the task sees it through `current().cancelled`."""

    def cancel_stop(self, job_id: str) -> None:
        """The grace is over and the job still runs. In-process (`--simple`): nothing can stop it safely; the
        task's own check of `current().cancelled` is the only way (documented best effort)."""
        log.warning("job.cancel_cooperative_only", job_id=job_id, worker=self.name)

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

    def work(self, burst=False, **kwargs):
        """RQ's work loop, with genqueue's heartbeat thread instead of RQ's scheduler process
        (see schedule.py for why).

        Raises OutageTooLong (a SystemExit, exit code 5) when the server stayed away longer than
        GENQUEUE_REDIS_OUTAGE_S; shorter outages are waited out inside each Redis command (outage.py)."""
        kwargs["with_scheduler"] = False
        self._defer_signals()
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
                (CANCEL_POLL_S, self._cancel_watch().tick),
                *self.extra_duties,
            ],
        )
        heartbeat.beat()
        if burst:
            mover.tick()  # like RQ's burst mode: bring due jobs back once before draining
            mover.wake()  # and parked jobs whose limit has room now
        heartbeat.start()
        self._guard_loop()
        try:
            worked = super().work(burst=burst, **kwargs)
            if self.loop_error is not None:
                raise WorkerLoopError(self.name, self.loop_error)
            return worked
        finally:
            with contextlib.suppress(OutageTooLong):  # leaving anyway: the keys expire on their own
                heartbeat.stop()
                mover.release()

    # -- a signal before RQ's loop ----------------------------------------------------------------------------
    # RQ installs its SIGTERM/SIGINT handlers only after bootstrap (register_birth, subscribe): a signal in
    # between killed the worker with Python's default action (exit -15, its registration left behind). From
    # the start of `work` a signal is held as a stop request instead; RQ's loop sees the flag before its first
    # pop and the worker stops as from any other signal (teardown, exit 0). A second signal is a cold stop.
    _early_signal: int | None = None

    def _defer_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (RQ's own would fail there too)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop_before_loop)

    def _stop_before_loop(self, signum, frame) -> None:
        self._early_signal = signum
        self._stop_requested = True
        self._shutdown_requested_date = utcnow()

    def _install_signal_handlers(self):
        super()._install_signal_handlers()
        if self._early_signal is not None:  # what RQ's request_stop does after a first signal
            signal.signal(signal.SIGINT, self.request_force_stop)
            signal.signal(signal.SIGTERM, self.request_force_stop)

    def _cancel_watch(self) -> CancelWatch:
        return CancelWatch(
            self.running_job_ids,
            self.cancel_seen,
            self.cancel_stop,
            self.settings.cancel_grace_s,
            hook=lambda job_id: run_on_cancel_in_thread(self.connection, job_id),
        )

    # -- the command channel (see the module docstring) -------------------------------------------------------
    def subscribe(self):
        """BaseWorker.subscribe, its thread polling every PUBSUB_POLL_S instead of every 60 s."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def unsubscribe(self):
        """Stop the thread first (no UNSUBSCRIBE whose reply could send it back to a long read), for at most
        PUBSUB_STOP_WAIT_S; closing the connection ends the subscription."""
        thread, self.pubsub_thread = self.pubsub_thread, None
        if thread is None:
            return
        thread.stop(timeout=0)  # the flag only; then wake its read at once with a command it ignores, instead
        with contextlib.suppress(Exception, OutageTooLong):  # of waiting out its poll (up to PUBSUB_POLL_S)
            self.connection.publish(self.pubsub_channel_name, WAKE_PAYLOAD)
        thread.join(PUBSUB_STOP_WAIT_S)
        if thread.is_alive():  # busy handling a command: it is a daemon thread, the process exits anyway
            log.warning("worker.pubsub_stop_slow", worker=self.name, waited_s=PUBSUB_STOP_WAIT_S)
            return
        with contextlib.suppress(Exception):
            self.pubsub.close()

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
