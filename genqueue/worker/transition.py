"""Apply a retry decision to Redis in one transaction: the job leaves the started registry and lands in
exactly one place — RQ's ScheduledJobRegistry (same job id, for the scheduler to bring back) or the DLQ.

The transaction WATCHes the job hash and first checks that this worker's execution is still in the
started registry. Whoever removes the execution from the started registry owns the job's next move; a
sweeper that found the job abandoned writes the job hash too, so a concurrent claim makes our EXEC fail
(WatchError), and on the re-check we see the execution gone and step aside. No double move, no loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from redis.exceptions import WatchError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now

from ..backend import events, keys
from ..backend.counters import count_in, fields_for_failure, seconds_between
from ..backend.scripts import registered
from ..dlq.entry import build_entry, iso
from ..dlq.store import DLQStore
from ..retry.kinds import ErrorKind
from ..retry.manager import Decision, Failure, RetryManager, RetryState, decision_record
from ..retry.meta import gq, retry_state
from ..support.logs import get_logger
from ..tasks.registry import lookup
from ..tenants.fair import adopt
from .cancel import CancelVetoed, finish_canceled, read_request
from .guarded import RELEASE, VETOED, recorder, run_guarded
from .limiting import attempt_usage, limit_or_none, log_event, outcome_of, pause_ms, release_args

log = get_logger("genqueue.worker")
MAX_TX_ATTEMPTS = 20


def _ts(dt) -> str | None:
    return None if dt is None else iso(dt.timestamp())


def _call_of(job: Job) -> tuple[str, list, dict]:
    """(func, args, kwargs), or placeholders for a job whose data is not JSON (worker/job.py UnreadableJob):
    the entry must still be written, so the job lands somewhere an admin sees it."""
    try:
        return job.func_name or "<unreadable>", list(job.args), dict(job.kwargs)
    except Exception:  # noqa: BLE001 - unreadable data: keep what is known, the id and the error
        return "<unreadable>", [], {}


def dead_letter_entry(job: Job, queue_name: str, decision: Decision, failure: Failure, store: DLQStore) -> dict:
    meta = gq(job)
    failed_at = now().timestamp()
    func, args, kwargs = _call_of(job)
    return build_entry(
        job_id=job.id,
        queue=queue_name,
        func=func,
        args=args,
        kwargs=kwargs,
        reason=str(decision.reason),
        error={
            "kind": str(failure.kind),
            "type": failure.type,
            "message": failure.message,
            "status_code": failure.status_code,
            "traceback": failure.traceback,
        },
        history=list(meta["history"]),
        retry_count=int(meta.get("retries") or 0),
        crash_count=int(meta.get("crashes") or 0),
        enqueued_at=_ts(job.enqueued_at),
        failed_at=failed_at,
        retention_s=store.retention_s,
        replays=int(meta.get("replays") or 0),
        replayed_from=meta.get("replayed_from"),
        provider_job_id=meta.get("provider_job_id"),
        options={"timeout": job.timeout, "max_retries": meta.get("max_retries"), "tenant": meta.get("tenant")},
    )


def schedule_in(pipe, queue, job: Job, run_at: float) -> None:
    """Queue.schedule_job's effect, inside our MULTI.

    RQ 2.12's ScheduledJobRegistry.schedule ignores its `pipeline` argument and ZADDs on the connection at
    once, so calling it here would put the job in the scheduled registry before (or without) the EXEC that
    takes it out of the started registry. Its scores are also whole seconds, truncated: a retry could run
    up to 1 s early, so we round up, which keeps a provider's Retry-After honoured.
    """
    job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
    job.save(pipeline=pipe)
    pipe.sadd(queue.redis_queues_keys, queue.key)
    pipe.zadd(queue.scheduled_job_registry.key, {job.id: math.ceil(run_at)})


def move_failed_job(
    connection,
    job: Job,
    queue,
    decision: Decision,
    entry: dict[str, Any] | None,
    store: DLQStore,
    execution: Execution | None,
    also: Callable[[Any], None] | None = None,
    registry_claim: tuple[str, str] | None = None,
    failure: Failure | None = None,
    worker_name: str = "?",
) -> bool:
    """_move_or_veto; a job whose cancel request the move found is canceled instead (worker/cancel.py)."""
    try:
        return _move_or_veto(connection, job, queue, decision, entry, store, execution, also, registry_claim, failure)
    except CancelVetoed:
        return finish_canceled(
            connection,
            job,
            queue,
            execution=execution,
            registry_claim=registry_claim,
            worker_name=worker_name,
            also=also,
        )


def _move_or_veto(
    connection,
    job: Job,
    queue,
    decision: Decision,
    entry: dict[str, Any] | None,
    store: DLQStore,
    execution: Execution | None,
    also: Callable[[Any], None] | None = None,
    registry_claim: tuple[str, str] | None = None,
    failure: Failure | None = None,
) -> bool:
    """Run the move; False when another process had already claimed the job (we then change nothing);
    CancelVetoed when the job's cancel request is there (checked in the same script or transaction).
    The job's limit slot (if it has a limit key) is given back in the same step; a 429's Retry-After
    pauses the whole key (limits/).

    `execution` is the run being failed: its started-registry member is the claim we check and release.
    `registry_claim` = (registry key, job id) is the claim instead when the job sits in another RQ
    registry (the sweep taking a job back from FailedJobRegistry): checked and removed the same way.
    `also(pipe)` adds the caller's own bookkeeping (a worker's counters) to the same MULTI.
    """
    started_key = queue.started_job_registry.key
    limit = limit_or_none(job)
    # a crash (the sweep's, or a horse that died) drops the unit reservation; any other end settles it
    settle, usage = attempt_usage(job, limit, crashed=decision.kind is ErrorKind.CRASH)
    release = release_args(limit, job.id, pause_ms(decision, failure), outcome_of(decision), settle)
    if decision.is_retry and (execution is None) != (registry_claim is None):
        ok, event = _retry_guarded(
            connection, job, queue, decision, store, execution, also, registry_claim, release, usage
        )
        if not ok and event == VETOED:
            raise CancelVetoed(job.id)
        if ok and limit is not None:
            log_event(log, limit.key, event, limit.tenant)
        return ok
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(job.key, keys.cancel_request(job.id))
                if execution is not None and pipe.zscore(started_key, execution.composite_key) is None:
                    pipe.reset()
                    return False
                if registry_claim is not None and pipe.zscore(*registry_claim) is None:
                    pipe.reset()
                    return False
                if pipe.exists(keys.cancel_request(job.id)):
                    pipe.reset()
                    raise CancelVetoed(job.id)
                pipe.multi()
                add_at = _queue_move(pipe, job, queue, decision, entry, store, execution, also, registry_claim)
                if release or usage:  # the limit slot goes back, the usage is counted: same MULTI (EVALSHA is fine)
                    registered(connection, RELEASE)(args=[len(release), *release, len(usage), *usage], client=pipe)
                replies = pipe.execute()
                if add_at is not None:
                    store.note_pruned(replies[add_at])
                if release and limit is not None:
                    log_event(log, limit.key, replies[-1], limit.tenant)
                return True
            except WatchError:
                continue
    raise RuntimeError(f"job {job.id}: could not record the failure after {MAX_TX_ATTEMPTS} attempts")


def _retry_guarded(
    connection,
    job: Job,
    queue,
    decision: Decision,
    store: DLQStore,
    execution: Execution | None,
    also: Callable[[Any], None] | None,
    registry_claim: tuple[str, str] | None,
    release: list[Any],
    usage: list[Any],
) -> tuple[bool, str]:
    """The retry move as one round trip (guarded.py): the same writes as the transaction in
    move_failed_job, run only while the claim holds. Nothing here needs a reply, so nothing is lost by not
    having a MULTI; the claim check and the writes are one atomic script."""
    pipe = recorder(connection)
    _queue_move(pipe, job, queue, decision, None, store, execution, also, registry_claim)
    if execution is not None:
        claim: tuple[str, ...] = ("member", queue.started_job_registry.key, execution.composite_key)
    else:
        assert registry_claim is not None
        claim = ("member", *registry_claim)
    return run_guarded(connection, pipe, claim, release, veto=keys.cancel_request(job.id), usage=usage)


def _queue_move(
    pipe,
    job: Job,
    queue,
    decision: Decision,
    entry: dict[str, Any] | None,
    store: DLQStore,
    execution: Execution | None,
    also: Callable[[Any], None] | None,
    registry_claim: tuple[str, str] | None,
) -> int | None:
    """The move's writes, queued into `pipe` (a MULTI, or a guarded recorder): release the claim, leave the
    intermediate list, land in exactly one place, count. Returns where the DLQ add's reply will be, if any."""
    if execution is not None:
        execution.delete(job=job, pipeline=pipe)
    if registry_claim is not None:
        pipe.zrem(*registry_claim)
    # A worker that died between popping the job and starting it leaves the id in RQ's
    # intermediate list too; left there, it would later be pushed back a second time.
    pipe.lrem(queue.intermediate_queue.key, 0, job.id)
    add_at = None
    if decision.is_retry:
        events.add(
            pipe,
            job.id,
            "retry_scheduled",
            {
                "attempt": decision.attempt,
                "kind": str(decision.kind),
                "delay": round(decision.delay or 0, 3),
                "retry_after": decision.retry_after,
            },
        )
        if decision.delay and decision.delay > 0:
            schedule_in(pipe, queue, job, time.time() + decision.delay)
        else:
            queue.enqueue_job(job, pipeline=pipe)
            adopt(pipe, queue.name, [job.id])
    else:
        assert entry is not None
        events.add(pipe, job.id, "dead_lettered", {"kind": str(decision.kind), "reason": str(decision.reason)})
        add_at = len(pipe.command_stack)
        store.add(entry, pipeline=pipe)
        # The entry holds everything needed to re-create the job; the RQ hash would only be a
        # second, drifting copy, so the DLQ is the job's one place from now on.
        pipe.delete(job.key, job.dependents_key, job.dependencies_key)
    count_in(
        pipe,
        queue.name,
        fields_for_failure(
            str(decision.kind),
            decision.is_retry,
            None if decision.is_retry else str(decision.reason),
            seconds_between(job.started_at, job.ended_at),
            _call_of(job)[0],
        ),
    )
    if also is not None:
        also(pipe)
    return add_at


def with_task_defaults(state: RetryState, job: Job) -> RetryState:
    """The task's declared max_retries and policy, where the job carries none of its own (a job enqueued by
    name from a process that could not import the task)."""
    try:
        spec = lookup(job.func_name)
    except Exception:  # noqa: BLE001 - unreadable job data: no task, no defaults
        return state
    if spec is None:
        return state
    if state.max_retries is None and spec.max_retries is not None:
        state = replace(state, max_retries=spec.max_retries)
    if not state.policy_overrides and spec.policy:
        state = replace(state, policy_overrides=spec.policy)
    if spec.limits is not None and spec.limits.max_wait_s:
        state = replace(state, max_wait_s=spec.limits.max_wait_s)
    return state


def record_failure(
    connection,
    job: Job,
    queue,
    failure: Failure,
    manager: RetryManager,
    store: DLQStore,
    *,
    execution: Execution | None,
    worker_name: str,
    also: Callable[[Any], None] | None = None,
    registry_claim: tuple[str, str] | None = None,
) -> tuple[Decision, bool]:
    """Decide (pure), append the decision record, move the job (one transaction), log one line. A job whose
    cancel was requested is canceled instead (worker/cancel.py): never retried, never dead-lettered."""
    state = with_task_defaults(retry_state(job), job)
    if read_request(connection, job.id) is not None:
        moved = finish_canceled(
            connection,
            job,
            queue,
            execution=execution,
            registry_claim=registry_claim,
            worker_name=worker_name,
            also=also,
        )
        return manager.decide(failure, state), moved
    decision = manager.decide(failure, state)
    meta = gq(job)
    meta["history"].append(
        decision_record(
            decision,
            failure,
            started_at=_ts(job.started_at),
            ended_at=_ts(job.ended_at) or _ts(now()),
            worker=worker_name,
        )
    )
    if decision.charged:
        meta["retries"] = state.retries + 1
    if decision.kind is ErrorKind.CRASH:
        meta["crashes"] = state.crashes + 1
    entry = None if decision.is_retry else dead_letter_entry(job, queue.name, decision, failure, store)
    bound = log.bind(job_id=job.id, queue=queue.name, attempt=decision.attempt, kind=str(decision.kind))
    try:
        moved = _move_or_veto(connection, job, queue, decision, entry, store, execution, also, registry_claim, failure)
    except CancelVetoed:  # the request came after the check above: the job's history keeps the decision
        gq(job)["history"].pop()
        moved = finish_canceled(
            connection,
            job,
            queue,
            execution=execution,
            registry_claim=registry_claim,
            worker_name=worker_name,
            also=also,
        )
        return decision, moved
    if not moved:
        bound.warning("retry.claimed_elsewhere")
    elif decision.is_retry:
        bound.info(
            "retry.scheduled",
            delay=round(decision.delay or 0, 3),
            retry_after=decision.retry_after,
            charged=decision.charged,
            clipped=decision.clipped,
            error=failure.message[:200],
        )
    else:
        bound.warning("retry.dead_lettered", reason=str(decision.reason), error=failure.message[:200])
    return decision, moved
