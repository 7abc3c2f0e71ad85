"""The pop and the worker's own bookkeeping: RQ writes the worker's state, heartbeat and working time in a
round trip each; here they ride with the next one (the pop, or the start claim), and for one queue the pop
and the job's fetch are one round trip (guarded.pop). A burst worker also waits for its queues' parked jobs."""

from __future__ import annotations

import math
import time

from rq.exceptions import DequeueTimeout
from rq.utils import now as utcnow
from rq.utils import utcformat
from rq.worker.base import WorkerStatus

from ..backend import keys
from ..backend.queues import make_queue
from ..support.logs import get_logger
from ..tenants.fair import refill
from .base import WorkerBase
from .guarded import pop, recorder
from .schedule import WAKE_TICK_S

BURST_PARKED_WAIT_S = 600  # a burst worker waits this long, at most, for its queues' parked jobs
log = get_logger("genqueue.worker")


class PopMixin(WorkerBase):
    blocking_pop = False  # in the server's blocking pop (an empty queue): nothing popped yet to lose

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
                    queue.name,
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
        self.blocking_pop = True  # read by the concurrent worker's stop: a stop may interrupt this wait
        try:
            result = self.queue_class.dequeue_any(
                self._ordered_queues,
                timeout,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
        finally:
            self.blocking_pop = False
        if result is not None:
            refill(self.connection, result[1].name)  # RQ's pop took one from the list: the lanes top it up
        return result

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
            fields["last_heartbeat"] = utcformat(self.last_heartbeat or utcnow())
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
