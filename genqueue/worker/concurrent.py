"""ConcurrentWorker: up to N jobs at once in one process (`genqueue worker --concurrency N`).

`async def` tasks run on one event loop (a thread of its own), sync tasks on a pool of up to N threads
(started as sync jobs need them: an async-only worker runs none); N is the limit for both together (one
semaphore: a slot is taken *before* the pop, so the worker never holds a job it cannot start). Every thread
allocates from one glibc malloc arena (`limit_malloc_arenas`). Every job goes through exactly the moves a
GenSimpleWorker makes, per job:

- sync jobs: the pool thread calls GenSimpleWorker.execute_job → FailurePathMixin.execute_job →
  SimpleWorker.execute_job, i.e. prepare_execution (the start claim), RQ's perform_job, handle_job_success /
  handle_exception + handle_job_failure — unchanged, in-process, like `--simple`;
- async jobs: the same methods, called from `_run_async` (perform_job's steps, awaiting the task instead of
  calling it); each blocking Redis move runs in a small pool of move threads, so the loop never waits on Redis.

Per-job state. RQ's worker and FailurePathMixin keep the running job's state on `self`: `execution` (read
by handle_job_success, handle_job_failure, RQ's cleanup_execution), `current_claim` (the heartbeat),
`_prepared_job_id` (prepare_job_execution), `_failures` (the classified exception, from handle_exception to
handle_job_failure: keyed by job id, but a timed-out attempt left behind and its retry can share an id in
one process). Here those four are properties backed by a ContextVar holding a
`JobState`: each job runs in a fresh `contextvars.Context` (its pool thread enters one per job; each asyncio
task is created with one), so N jobs see N states and the fork/simple workers, which never set the var, are
unchanged (their `self` attributes are the properties' fallback object `_own`). A JobState is a mutable
object, so a context *copy* (a move run off the loop, `_in_thread`) shares it. `_stopped_job_id` is
compared with a job id (RQ's stop-job command has no horse to kill here, as for SimpleWorker); `_pending` (bookkeeping sent with the next round trip) is flushed under a lock.

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
returns, finds its claim gone and steps aside. Both paths end as TIMEOUT, as in a forking worker.

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
import concurrent.futures
import contextvars
import ctypes
import functools
import inspect
import itertools
import os
import queue as queue_mod
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from rq.job import JobStatus
from rq.timeouts import JobTimeoutException
from rq.utils import now as utcnow
from rq.worker.base import WorkerStatus

from ..backend.outage import OutageTooLong
from ..retry.kinds import ErrorKind
from ..retry.manager import Failure
from ..support.logs import get_logger
from ..tasks.context import reset, set_current
from ..tasks.registry import bind, lookup
from .classes import DuplicateDispatch, GenSimpleWorker, JobParked
from .job import check_result, context_for

log = get_logger("genqueue.worker")
UNINTERRUPTIBLE_AFTER_S = 5.0  # after its timeout, a thread gets this long to stop before its slot is replaced
DEQUEUE_TIMEOUT_S = 1  # the blocking pop's timeout: how soon a stop request is seen while idle


@dataclass(eq=False)
class JobState:
    """What RQ and FailurePathMixin keep on `self` for *the* running job, kept per job instead."""

    execution: Any = None
    current_claim: Any = None
    prepared_job_id: str | None = None
    failures: dict = field(default_factory=dict)  # handle_exception → handle_job_failure, this job's only
    limit: Any = None  # its limit key (worker/limiting.py), taken in the claim, released by the success move
    job: Any = None
    queue: Any = None
    thread_id: int | None = None
    released: bool = False  # its slot was given back (once)
    abandoned: bool = False  # failed from outside its thread (stuck past its timeout, shutdown grace)
    timeout_s: float | None = None
    extra: dict = field(default_factory=dict)


_job_state: contextvars.ContextVar[JobState] = contextvars.ContextVar("genqueue_job_state")


def _per_job(attr: str) -> property:
    def get(self):
        state = _job_state.get(None)
        return getattr(self._own if state is None else state, attr)

    def set_(self, value):
        state = _job_state.get(None)
        target = self._own if state is None else state
        setattr(target, attr, value)
        if attr == "current_claim" and state is not None:
            with self._lock:
                if value is None:
                    self._claims.pop(id(state), None)
                else:
                    self._claims[id(state)] = value

    return property(get, set_)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Have every thread allocate from one glibc malloc arena. By default glibc gives each thread that
    allocates its own arena (up to 8 per core), and each keeps the memory it freed: a worker with 50 job threads
    measured 4-6 MiB (PSS) more with them. Python allocates under the GIL, so the threads never contend for
    one arena. Not done when MALLOC_ARENA_MAX is set (the operator's choice) or without glibc's mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def _async_raise(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise exc_type in the thread at its next bytecode (None: clear a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else ctypes.c_void_p(0)
    )


class _Interrupted(JobTimeoutException):
    """Raised inside a timed-out thread; turned into RQ's JobTimeoutException with its message on the way out."""


@dataclass(eq=False)
class _Armed:
    state: JobState
    thread_id: int
    deadline: float
    timeout_s: float
    fired_at: float | None = None
    given_up: bool = False


class ThreadTimeouts(threading.Thread):
    """The watchdog of sync jobs' timeouts (the pool threads have no SIGALRM: that is the main thread's)."""

    def __init__(self, worker: ConcurrentWorker) -> None:
        super().__init__(name="genqueue-timeouts", daemon=True)
        self.worker = worker
        self._lock = threading.Lock()
        self._armed: dict[int, _Armed] = {}
        self._stop_event = threading.Event()

    def penalty(self, timeout, exception=JobTimeoutException, **kwargs) -> _Penalty:
        """Called by RQ's perform_job as `self.death_penalty_class(timeout, JobTimeoutException, job_id=...)`."""
        return _Penalty(self, timeout)

    def arm(self, timeout: float) -> _Armed | None:
        if not timeout or timeout <= 0:
            return None
        entry = _Armed(_job_state.get(None) or JobState(), threading.get_ident(), time.monotonic() + timeout, timeout)
        with self._lock:
            self._armed[id(entry)] = entry
        return entry

    def disarm(self, entry: _Armed | None, exc: BaseException | None) -> None:
        if entry is None:
            return
        with self._lock:
            self._armed.pop(id(entry), None)
            fired = entry.fired_at is not None
            if fired and not isinstance(exc, _Interrupted):
                _async_raise(entry.thread_id, None)  # fired but not delivered yet: clear it, raise it here
        if fired or isinstance(exc, _Interrupted):
            raise JobTimeoutException(f"Task exceeded maximum timeout value ({entry.timeout_s:g} seconds)") from None

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            stuck = []
            current = time.monotonic()
            with self._lock:
                for entry in self._armed.values():
                    if entry.fired_at is None and current >= entry.deadline:
                        entry.fired_at = current
                        _async_raise(entry.thread_id, _Interrupted)
                    elif (
                        entry.fired_at is not None
                        and not entry.given_up
                        and current >= entry.fired_at + UNINTERRUPTIBLE_AFTER_S
                    ):
                        entry.given_up = True
                        _async_raise(entry.thread_id, None)
                        stuck.append(entry)
                for entry in stuck:
                    self._armed.pop(id(entry), None)
            for entry in stuck:
                try:
                    self.worker.replace_stuck(entry)
                except Exception as exc:  # noqa: BLE001 - the watchdog must outlive one failed move
                    log.warning("job.timeout_move_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def stop(self) -> None:
        self._stop_event.set()


class _Penalty:
    def __init__(self, timeouts: ThreadTimeouts, timeout: float) -> None:
        self.timeouts, self.timeout, self.entry = timeouts, timeout, None

    def __enter__(self):
        self.entry = self.timeouts.arm(self.timeout)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.timeouts.disarm(self.entry, exc)
        return False


class _DaemonExecutor(concurrent.futures.Executor):
    """A few daemon threads for blocking calls (an exiting worker never waits for them, unlike
    ThreadPoolExecutor's threads, which the interpreter joins at exit)."""

    def __init__(self, workers: int, name: str) -> None:
        self._work: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        for i in range(workers):
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True).start()

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


async def run_task_async(spec, job) -> Any:
    """worker/job.run_task for an `async def` task, awaited on the worker's loop instead of asyncio.run."""
    args, kwargs = job.args, job.kwargs
    if not spec.positional and args:
        raise TypeError(f"task {spec.name} takes keyword arguments only")
    try:
        bound = bind(spec, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - as run_task: the call cannot succeed, ever
        raise TypeError(str(exc)) from None
    token = set_current(context_for(spec, job))
    try:
        result = await spec.fn(*bound.args, **bound.kwargs)
    finally:
        reset(token)
    check_result(spec, result)
    return result


class ConcurrentWorker(GenSimpleWorker):
    """Up to `concurrency` jobs at once in this process; see the module docstring."""

    execution = _per_job("execution")
    current_claim = _per_job("current_claim")
    _prepared_job_id = _per_job("prepared_job_id")
    _failures = _per_job("failures")
    _limit = _per_job("limit")

    def __init__(self, *args: Any, concurrency: int, shutdown_grace_s: float = 8.0, **kwargs: Any) -> None:
        self._own = JobState()  # before RQ's __init__, which sets self.execution
        self._lock = threading.Lock()
        self._claims: dict[int, Any] = {}
        self._running: dict[int, JobState] = {}
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.shutdown_grace_s = shutdown_grace_s
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pending_lock = threading.RLock()
        self._cold = False
        self._timeouts = ThreadTimeouts(self)
        self.death_penalty_class = self._timeouts.penalty  # perform_job's timeout, for pool threads
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
            mine = _job_state.get(None)
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
        between a pop and the hand-over); here a stop is only a flag, seen within DEQUEUE_TIMEOUT_S."""
        self._stop_requested = True
        self.set_shutdown_requested_date()

    def request_force_stop(self, signum, frame):
        self._cold = True
        return super().request_force_stop(signum, frame)

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
                    return
                self._idle += 1

    def _run_sync(self, state: JobState) -> None:
        _job_state.set(state)
        state.thread_id = threading.get_ident()
        try:
            GenSimpleWorker.execute_job(self, state.job, state.queue)  # the start claim, perform_job, the move
        except Exception as exc:  # noqa: BLE001 - a failed move (the job is then left to the sweep)
            log.warning("job.move_failed", job_id=state.job.id, error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self._release(state)

    def replace_stuck(self, entry: _Armed) -> None:
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
        self._start_pool_thread()
        exc = JobTimeoutException(
            f"Task exceeded maximum timeout value ({entry.timeout_s:g} seconds); its thread "
            f"did not stop within {UNINTERRUPTIBLE_AFTER_S:g} s and was left behind"
        )
        self._fail_from_outside(state, exc)

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
            _job_state.set(copy)
            job._status = JobStatus.FAILED
            job.ended_at = utcnow()
            if isinstance(exc, WorkerShutdown):  # not the job's fault: a crash, as if the process had died
                self._failures[job.id] = Failure(kind=ErrorKind.CRASH, type="WorkerShutdown", message=str(exc))
            else:
                self.handle_exception(job, type(exc), exc, None)
            self.handle_job_failure(
                job=job,
                queue=queue,
                started_job_registry=queue.started_job_registry,
                exc_string=f"{type(exc).__name__}: {exc}",
            )

        try:
            contextvars.Context().run(fail)
        finally:
            self._release(state)

    # -- async jobs -------------------------------------------------------------------------------------------
    def _spawn_async(self, state: JobState, spec) -> None:
        task = self._loop.create_task(self._run_async(state, spec), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_thread(self, fn, *args, **kwargs):
        """A blocking move off the loop, in this job's context (a copy sharing its JobState)."""
        ctx = contextvars.copy_context()
        return await asyncio.wrap_future(self._moves.submit(ctx.run, functools.partial(fn, *args, **kwargs)))

    def _start_async(self, job, queue) -> bool:
        """prepare_execution (the start claim), with FailurePathMixin.execute_job's handling of a duplicate."""
        try:
            self.prepare_execution(job)
        except DuplicateDispatch as dup:
            self.connection.lrem(queue.intermediate_queue.key, 1, job.id)
            log.warning("job.duplicate_dispatch_skipped", job_id=job.id, queue=queue.name, status=dup.status)
            return False
        except JobParked as parked:  # over its limit: parked off the queue, its slot in this process freed
            log.info("limits.parked", job_id=job.id, queue=queue.name, key=parked.key, why=parked.why)
            return False
        self.connection.persist(job.key)  # as RQ's Job.perform
        return True

    def _fail_async(self, job, queue, exc_info, exc_string: str) -> None:
        if _job_state.get().abandoned:
            return  # already failed from outside (shutdown grace); the claim is gone
        self.handle_exception(job, *exc_info)
        self.handle_job_failure(
            job=job, exc_string=exc_string, queue=queue, started_job_registry=queue.started_job_registry
        )

    async def _run_async(self, state: JobState, spec) -> None:
        """RQ's perform_job for an `async def` task: the same methods, the task awaited with its timeout."""
        _job_state.set(state)
        job, queue = state.job, state.queue
        try:
            if not await self._in_thread(self._start_async, job, queue):
                return
            try:
                job.started_at = utcnow()
                timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
                try:
                    result = await asyncio.wait_for(run_task_async(spec, job), timeout if timeout > 0 else None)
                except TimeoutError:
                    raise JobTimeoutException(f"Task exceeded maximum timeout value ({timeout} seconds)") from None
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
            log.warning("job.move_failed", job_id=job.id, error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self._release(state)

    # -- life cycle -------------------------------------------------------------------------------------------
    def work(self, burst: bool = False, **kwargs):
        limit_malloc_arenas()  # before this worker's threads start
        self._loop = asyncio.new_event_loop()
        self._moves = _DaemonExecutor(min(16, max(2, self.concurrency // 4)), "genqueue-move")
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
        stop_at = time.monotonic() + self.shutdown_grace_s if self._stop_requested else None
        while self.in_flight():
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            if self._stop_requested and stop_at is None:
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
