"""ConcurrentWorker: up to N jobs at once in one process (`genqueue worker --concurrency N`).

`async def` tasks run on one event loop (a thread of its own), sync tasks on a pool of up to N threads
(started as sync jobs need them: an async-only worker runs none); N is the limit for both together (one
semaphore: a slot is taken *before* the pop, so the worker never holds a job it cannot start). Every thread
allocates from one glibc malloc arena (`limit_malloc_arenas`). Every job goes through exactly the moves a
GenSimpleWorker makes, per job:

- sync jobs: the pool thread calls GenSimpleWorker.execute_job → FailurePathMixin.execute_job (the job
  boundary, boundary.py) → SimpleWorker.execute_job, i.e. prepare_execution (the start claim), RQ's
  perform_job, handle_job_success / handle_exception + handle_job_failure — unchanged, in-process, like
  `--simple`;
- async jobs: the same methods, called from `_run_async` (perform_job's steps, awaiting the task instead of
  calling it; the start claim inside the same job boundary); each blocking Redis move runs in a small pool
  of move threads, so the loop never waits on Redis.

The parts live beside this module: per-job state in concurrent_state.py, the timeout watchdog in
thread_timeouts.py, the move executor and malloc tuning in pool.py.

Per-job state. RQ's worker and FailurePathMixin keep the running job's state on `self`: `execution` (read
by handle_job_success, handle_job_failure, RQ's cleanup_execution), `current_claim` (the heartbeat),
`_prepared_job_id` (prepare_job_execution), `_failures` (the classified exception, from handle_exception to
handle_job_failure: keyed by job id, but a timed-out attempt left behind and its retry can share an id in
one process). Here those four are properties backed by a ContextVar holding a
`JobState`: each job runs in a fresh `contextvars.Context` (its pool thread enters one per job; each asyncio
task is created with one), so N jobs see N states and the fork/simple workers, which never set the var, are
unchanged (their `self` attributes are the properties' fallback object `_own`). A JobState is a mutable
object, so a context *copy* (a move run off the loop, `_in_thread`) shares it. `_stopped_job_id` is
compared with a job id (RQ's stop-job command has no horse to kill here, as for SimpleWorker); `_pending`
(bookkeeping sent with the next round trip) is flushed under a lock.

RQ identity: ONE RQ worker (one `rq:worker:<name>` hash, one genqueue alive key) with up to N executions in
the started registry, each naming this worker. Why: liveness is per process — one heartbeat thread, one
alive key — and a process dies as a whole, so when it is SIGKILLed its one alive key lapses and the sweep
finds all N executions abandoned at once (CRASH retries, uncharged), exactly the sweep that exists. N
identities per process would be N hashes and N alive keys that can only live and die together, and `rq info`
would count N workers where there is one process. What RQ readers show: `rq info` / rq-dashboard list one
worker, `busy` while any job runs, `current_job` the latest started one (RQ has one field), and every
running job in the queue's started registry (StartedJobRegistry / `rq info -R`, the job pages) as usual.

Timeouts, without a work horse: an async job is cancelled at its timeout (asyncio.wait_for); a sync job gets
RQ's JobTimeoutException raised in its thread (PyThreadState_SetAsyncExc, as Dramatiq's TimeLimit does),
which takes effect at the thread's next Python bytecode. A thread still running UNINTERRUPTIBLE_AFTER_S
later (stuck in C code, or it swallowed the exception) is logged (`job.timeout_uninterruptible`), its job is
failed as TIMEOUT by the same move, and its slot is replaced by a new thread; the old thread, if it ever
returns, finds its claim gone and steps aside. Both paths end as TIMEOUT, as in a forking worker. Such a
stuck thread still holds a thread and a connection: with more than GENQUEUE_MAX_STUCK_THREADS of them (default
4) still stuck, the worker retires (`worker.retiring`): it takes no more jobs, lets the running ones finish and
exits with status 6, for its supervisor to start a fresh process.

Warm shutdown (SIGTERM): stop popping at once, let running jobs finish for GENQUEUE_SHUTDOWN_GRACE seconds,
then fail each one still running with a CRASH (`WorkerShutdown`) through the ordinary claim-guarded failure
move: an immediate retry, uncharged to the retry budget (counted in the crash budget like any worker death),
rather than waiting for the sweep. Safe because the move checks the claim (a job finishing at that moment
lands once) and the process exits right after, taking the job's thread with it. A second signal (cold
shutdown) exits at once; the jobs are then found abandoned by the sweep (CRASH).

Limits: one process holds the GIL, so CPU-bound tasks get no parallelism (use forking workers); a job that
kills the process (segfault, OOM, os._exit) takes its N−1 siblings with it (CRASH retries); an async task
that blocks the loop (time.sleep in an `async def`) stalls every async job, and its timeout fires only when
it yields.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import queue as queue_mod
import sys
import threading
import time
import traceback
from typing import Any

from rq.exceptions import StopRequested
from rq.job import JobStatus
from rq.timeouts import JobTimeoutException
from rq.utils import now as utcnow
from rq.worker.base import WorkerStatus

from ..backend.outage import OutageTooLong
from ..retry.kinds import ErrorKind
from ..retry.manager import Failure
from ..support.logs import get_logger
from ..support.safe_text import describe
from ..tasks.context import reset, set_current
from ..tasks.registry import bind, lookup
from . import boundary
from .cancel import JobCanceled
from .classes import GenSimpleWorker
from .concurrent_state import JobState, job_state, per_job
from .duties import EXIT_RETIRED
from .job import check_result, context_for, flush_progress
from .pool import DaemonExecutor, limit_malloc_arenas
from .thread_timeouts import UNINTERRUPTIBLE_AFTER_S, Armed, ThreadTimeouts

log = get_logger("genqueue.worker")
DEQUEUE_TIMEOUT_S = 1  # the blocking pop's timeout: how soon a stop request is seen while idle
DEFAULT_MAX_STUCK_THREADS = 4  # GENQUEUE_MAX_STUCK_THREADS: stuck threads tolerated before the worker retires


async def run_task_async(spec, job) -> Any:
    """worker/job.run_task for an `async def` task, awaited on the worker's loop instead of asyncio.run."""
    args, kwargs = job.args, job.kwargs
    if not spec.positional and args:
        raise TypeError(f"task {spec.name} takes keyword arguments only")
    try:
        bound = bind(spec, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - as run_task: the call cannot succeed, ever
        raise TypeError(str(exc)) from None
    ctx = context_for(spec, job)
    token = set_current(ctx)
    try:
        result = await spec.fn(*bound.args, **bound.kwargs)
    finally:
        reset(token)
        flush_progress(ctx)  # one short write on the loop, once per job
    check_result(spec, result)
    return result


class ConcurrentWorker(GenSimpleWorker):
    """Up to `concurrency` jobs at once in this process; see the module docstring."""

    execution = per_job("execution")
    current_claim = per_job("current_claim")
    _prepared_job_id = per_job("prepared_job_id")
    _failures = per_job("failures")
    _limit = per_job("limit")

    def __init__(
        self,
        *args: Any,
        concurrency: int,
        shutdown_grace_s: float = 8.0,
        max_stuck_threads: int = DEFAULT_MAX_STUCK_THREADS,
        **kwargs: Any,
    ) -> None:
        self._own = JobState()  # before RQ's __init__, which sets self.execution
        self._lock = threading.Lock()
        self._claims: dict[int, Any] = {}
        self._running: dict[int, JobState] = {}
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.shutdown_grace_s = shutdown_grace_s
        self.max_stuck_threads = max_stuck_threads
        self._stuck: set[int] = set()  # threads stuck past their timeout, still running
        self._retiring = False  # too many stuck threads: no more jobs, the others finish, then exit 6
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pending_lock = threading.RLock()
        self._cold = False
        self._signalled = False  # a stop asked by SIGTERM/SIGINT (not a burst's end, not retiring)
        self._timeouts = ThreadTimeouts(self)
        # perform_job's timeout, for pool threads: a factory of context managers, as RQ calls its class
        self.death_penalty_class = self._timeouts.penalty  # type: ignore[assignment]
        self._work: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        self._retired: set[int] = set()
        self._threads = 0  # pool threads started and not retired (at most `concurrency`)
        self._idle = 0  # of them, those waiting for a job (a new thread counts as idle at once)
        self._waiting = 0  # sync jobs handed over and not yet taken by a thread
        self._thread_ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- what RQ's loop sees ----------------------------------------------------------------------------------
    @property
    def dequeue_timeout(self) -> int:
        return DEQUEUE_TIMEOUT_S

    def live_claims(self):
        with self._lock:
            return list(self._claims.values())

    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """Take a slot first, then pop (so a popped job always starts at once); None once a stop is requested."""
        flushed = time.monotonic()
        while not self._slots.acquire(timeout=0.5):
            if self._stop_requested:
                return None
            self.heartbeat()
            if time.monotonic() - flushed > 30:  # all slots busy for long: keep the worker hash alive anyway
                with self._bookkeeping_pipe() as pipe:
                    pipe.execute()
                flushed = time.monotonic()
        if self._stop_requested:
            self._slots.release()
            return None
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        except BaseException:
            self._slots.release()
            raise
        if result is None:
            self._slots.release()
        return result

    def _pop(self, timeout):
        if self._stop_requested:
            return None
        return super()._pop(timeout)

    def execute_job(self, job, queue):
        """Hand the popped job to a pool thread or the event loop, and return to the pop at once."""
        state = JobState(job=job, queue=queue)
        with self._lock:
            self._running[id(state)] = state
        spec = None
        try:
            spec = lookup(job.func_name)
        except Exception:  # noqa: BLE001 - unreadable job data: the sync path dead-letters it (GenJob)
            spec = None
        if spec is not None and inspect.iscoroutinefunction(spec.fn):
            self._loop.call_soon_threadsafe(self._spawn_async, state, spec)
        else:
            self._submit_sync(state)

    def set_state(self, state, pipeline=None):
        if state == WorkerStatus.IDLE and self.in_flight():
            return  # RQ sets idle after each job and before each pop; busy while any job runs
        super().set_state(state, pipeline=pipeline)

    def set_current_job_id(self, job_id=None, pipeline=None):
        if job_id is None:  # a job ended: show another running one, if any (RQ has one current_job field)
            mine = job_state.get()
            with self._lock:
                others = [s.job.id for s in self._running.values() if s is not mine and s.job is not None]
            job_id = others[-1] if others else None
        super().set_current_job_id(job_id, pipeline=pipeline)

    def _flush_bookkeeping(self, pipe) -> None:
        with self._pending_lock:
            super()._flush_bookkeeping(pipe)

    def heartbeat(self, timeout=None, pipeline=None):
        with self._pending_lock:
            super().heartbeat(timeout, pipeline=pipeline)

    def _shutdown(self):
        """RQ raises StopRequested from the signal handler when idle, wherever the main thread is (maybe
        between a pop and the hand-over); here a stop is a flag, seen within DEQUEUE_TIMEOUT_S — and raised at
        once only while the main thread waits in the server's blocking pop of an empty queue, as RQ's idle
        worker does (a job the server hands over at that very moment stays in RQ's intermediate list, where
        the sweep finds it)."""
        self._stop_requested = True
        self._signalled = True
        self.set_shutdown_requested_date()
        if self.blocking_pop:
            raise StopRequested()

    def request_force_stop(self, signum, frame):
        self._cold = True
        return super().request_force_stop(signum, frame)

    # -- cancel requests (cancel.py) ------------------------------------------------------------------------
    def _state_of(self, job_id: str) -> JobState | None:
        with self._lock:
            return next((s for s in self._running.values() if s.job is not None and s.job.id == job_id), None)

    def cancel_seen(self, job_id: str) -> None:
        """An async job's task is cancelled at once (the task sees CancelledError); a sync job's task sees
        `current().cancelled` and has the grace to stop."""
        state = self._state_of(job_id)
        if state is None:
            return
        state.canceled = True
        if state.task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(state.task.cancel)

    def cancel_stop(self, job_id: str) -> None:
        """The grace is over: JobCanceled raised in a sync job's thread while its task runs."""
        state = self._state_of(job_id)
        if state is not None and state.task is None:
            if not self._timeouts.raise_in(state, JobCanceled):
                log.warning("job.cancel_not_interrupted", job_id=job_id, note="not in its task (no timeout?)")

    # -- slots ------------------------------------------------------------------------------------------------
    def _release(self, state: JobState) -> None:
        with self._lock:
            if state.released:
                return
            state.released = True
            self._running.pop(id(state), None)
            self._claims.pop(id(state), None)
        self._slots.release()
        if not self.in_flight():
            super().set_state(WorkerStatus.IDLE)  # pending: rides with the next round trip

    def _submit_sync(self, state: JobState) -> None:
        """Queue a sync job for the pool, starting a thread when no idle one is left for it. Threads start on
        demand, not N at once: an async-only worker runs none, and start-up does not wait for N of them."""
        with self._lock:
            self._waiting += 1
            spawn = self._waiting > self._idle and self._threads < self.concurrency
            if spawn:
                self._threads += 1
                self._idle += 1
        self._work.put(state)
        if spawn:
            try:
                self._start_pool_thread()
            except BaseException:  # no thread after all (can't start new thread): the running ones take it
                with self._lock:
                    self._threads -= 1
                    self._idle -= 1
                raise

    def _start_pool_thread(self) -> None:
        threading.Thread(target=self._pool_thread, name=f"genqueue-job-{next(self._thread_ids)}", daemon=True).start()

    def _pool_thread(self) -> None:
        """Never short of threads: with `concurrency` of them started and none idle, a job handed over is
        taken by a thread that has released its slot and is on its way back here."""
        me = threading.get_ident()
        while True:
            state = self._work.get()
            if state is None:
                return
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            contextvars.Context().run(self._run_sync, state)
            with self._lock:
                if me in self._retired:  # replaced while stuck: its successor took its place in the count
                    self._retired.discard(me)  # and it is no longer stuck
                    return
                self._idle += 1

    def _run_sync(self, state: JobState) -> None:
        job_state.set(state)
        state.thread_id = threading.get_ident()
        try:
            GenSimpleWorker.execute_job(self, state.job, state.queue)  # the start claim, perform_job, the move
        except Exception as exc:  # noqa: BLE001 - a failed move (the job is then left to the sweep)
            log.warning("job.move_failed", job_id=state.job.id, error=describe(exc))
        finally:
            self._release(state)

    def replace_stuck(self, entry: Armed) -> None:
        """A sync job past its timeout whose thread did not stop: fail it as TIMEOUT and give its slot to a new
        thread. The move uses a copy of its state, so the old thread keeps its claim to check (and lose) if it
        ever returns to a success."""
        state = entry.state
        log.warning(
            "job.timeout_uninterruptible",
            job_id=state.job.id if state.job else None,
            timeout=entry.timeout_s,
            waited_s=UNINTERRUPTIBLE_AFTER_S,
            note="the thread did not stop (stuck in C code, or it caught the exception); slot replaced",
        )
        with self._lock:
            self._retired.add(entry.thread_id)
            self._idle += 1  # its successor, idle at once; self._threads is unchanged
            stuck = len(self._retired)
        self._start_pool_thread()
        if stuck > self.max_stuck_threads and not self._retiring:
            self._retire(stuck)
        exc = JobTimeoutException(
            f"Task exceeded maximum timeout value ({entry.timeout_s:g} seconds); its thread "
            f"did not stop within {UNINTERRUPTIBLE_AFTER_S:g} s and was left behind"
        )
        self._fail_from_outside(state, exc)

    def _retire(self, stuck: int) -> None:
        """Too many threads stuck past their timeout (each holds a thread and a connection): take no more jobs,
        let the running ones finish, and exit with EXIT_RETIRED so that the supervisor starts a fresh process."""
        self._retiring = True
        self.exit_status = EXIT_RETIRED
        self._stop_requested = True
        log.error(
            "worker.retiring",
            worker=self.name,
            stuck_threads=stuck,
            max_stuck_threads=self.max_stuck_threads,
            exit_status=EXIT_RETIRED,
            note="threads ignored their timeout; no more jobs, the running ones finish, then exit for a restart",
        )

    def _fail_from_outside(self, state: JobState, exc: BaseException) -> None:
        """The ordinary failure move for a job whose own thread or task cannot make it (stuck, or out of grace)."""
        if state.execution is None:  # not started yet (or already moved): nothing to claim
            return
        state.abandoned = True
        copy = JobState(
            execution=state.execution,
            current_claim=state.current_claim,
            prepared_job_id=state.prepared_job_id,
            job=state.job,
            queue=state.queue,
            limit=state.limit,
        )
        job, queue = state.job, state.queue

        def fail() -> None:
            job_state.set(copy)
            job._status = JobStatus.FAILED
            job.ended_at = utcnow()
            if isinstance(exc, WorkerShutdown):  # not the job's fault: a crash, as if the process had died
                self._failures[job.id] = Failure(kind=ErrorKind.CRASH, type="WorkerShutdown", message=describe(exc))
            else:
                self.handle_exception(job, type(exc), exc, None)
            self.handle_job_failure(
                job=job,
                queue=queue,
                started_job_registry=queue.started_job_registry,
                exc_string=describe(exc),
            )

        try:
            contextvars.Context().run(fail)
        finally:
            self._release(state)

    # -- async jobs -------------------------------------------------------------------------------------------
    def _spawn_async(self, state: JobState, spec) -> None:
        assert self._loop is not None  # started by work() before any job
        task = self._loop.create_task(self._run_async(state, spec), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_thread(self, fn, *args, **kwargs):
        """A blocking move off the loop, in this job's context (a copy sharing its JobState)."""
        ctx = contextvars.copy_context()
        return await asyncio.wrap_future(self._moves.submit(ctx.run, functools.partial(fn, *args, **kwargs)))

    def _start_async(self, job, queue) -> bool:
        """prepare_execution (the start claim) inside the job boundary, as a sync job's execute_job: a duplicate
        or parked job is skipped, a claimed job that can never run is failed there; True when it may run."""
        started = False

        def start() -> None:
            nonlocal started
            self.prepare_execution(job)
            self.connection.persist(job.key)  # as RQ's Job.perform
            started = True

        boundary.run_job(self, job, queue, start)
        return started

    def _fail_async(self, job, queue, exc_info, exc_string: str) -> None:
        state = job_state.get()
        if state is not None and state.abandoned:
            return  # already failed from outside (shutdown grace); the claim is gone
        self.handle_exception(job, *exc_info)
        self.handle_job_failure(
            job=job, exc_string=exc_string, queue=queue, started_job_registry=queue.started_job_registry
        )

    async def _run_async(self, state: JobState, spec) -> None:
        """RQ's perform_job for an `async def` task: the same methods, the task awaited with its timeout."""
        job_state.set(state)
        job, queue = state.job, state.queue
        try:
            if not await self._in_thread(self._start_async, job, queue):
                return
            try:
                job.started_at = utcnow()
                timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
                state.task = asyncio.ensure_future(run_task_async(spec, job))
                if state.canceled:  # seen while the start claim ran
                    state.task.cancel()
                try:
                    result = await asyncio.wait_for(state.task, timeout if timeout > 0 else None)
                except TimeoutError:
                    raise JobTimeoutException(f"Task exceeded maximum timeout value ({timeout} seconds)") from None
                except asyncio.CancelledError:
                    if not state.canceled:
                        raise
                    raise JobCanceled(f"job {job.id} was canceled") from None
                self.handle_execution_ended(job, queue, None)
                job._result = result
                job._status = JobStatus.FINISHED
                if not state.abandoned:
                    await self._in_thread(
                        self.handle_job_success, job=job, queue=queue, started_job_registry=queue.started_job_registry
                    )
            except asyncio.CancelledError:
                raise
            except BaseException:  # noqa: BLE001 - as perform_job's bare except
                job._status = JobStatus.FAILED
                self.handle_execution_ended(job, queue, None)
                exc_info = sys.exc_info()
                exc_string = "".join(traceback.format_exception(*exc_info))
                await self._in_thread(self._fail_async, job, queue, exc_info, exc_string)
        except asyncio.CancelledError:
            pass  # the loop is closing (the process is exiting): the sweep finds the job
        except Exception as exc:  # noqa: BLE001 - a failed move: the job is left to the sweep
            log.warning("job.move_failed", job_id=job.id, error=describe(exc))
        finally:
            self._release(state)

    # -- life cycle -------------------------------------------------------------------------------------------
    def work(self, burst=False, **kwargs):
        limit_malloc_arenas()  # before this worker's threads start
        self._loop = asyncio.new_event_loop()
        self._moves = DaemonExecutor(min(16, max(2, self.concurrency // 4)), "genqueue-move")
        threading.Thread(target=self._loop.run_forever, name="genqueue-loop", daemon=True).start()
        self._timeouts.start()
        return super().work(burst=burst, **kwargs)

    def teardown(self):
        try:
            self._drain()
        except OutageTooLong:
            pass
        finally:  # a cold shutdown (SystemExit) during the drain still deregisters the worker
            self._timeouts.stop()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            super().teardown()

    def _drain(self) -> None:
        """Let running jobs finish: all of them after a burst / idle exit, for the grace period after SIGTERM;
        then fail the rest as CRASH (WorkerShutdown), an immediate uncharged retry. Cold shutdown: leave them."""
        if self._cold:
            return
        stop_at = time.monotonic() + self.shutdown_grace_s if self._signalled else None
        while self.in_flight():
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            if self._signalled and stop_at is None:
                stop_at = time.monotonic() + self.shutdown_grace_s  # SIGTERM during a burst's drain
            time.sleep(0.05)
        with self._lock:
            left = list(self._running.values())
        for state in left:
            log.warning("worker.shutdown_requeued", job_id=state.job.id, grace_s=self.shutdown_grace_s)
            exc = WorkerShutdown(
                f"worker {self.name} stopped (SIGTERM) and the job was still running after "
                f"the {self.shutdown_grace_s:g} s grace period"
            )
            self._fail_from_outside(state, exc)


class WorkerShutdown(Exception):
    """A job still running when a concurrent worker's shutdown grace period ended: retried as CRASH."""
