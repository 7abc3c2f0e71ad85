"""Enqueue generation jobs, idempotently when the caller names the job id.

With an explicit job id, a second enqueue while the first job is queued, scheduled or running returns the
existing job (created=False). The enqueue script (jobs/submit.py) creates the job only if neither a job hash
nor a DLQ entry has the id, so the create step is race-free; a finished or failed job with the same id is
replaced (in a WATCH/MULTI that re-checks its state and owner), and a dead-lettered one is refused with
Conflict: its entry is replayed (`dlq retry`, `jobs retry`) or deleted, never silently overwritten.

An id belongs to one tenant for as long as anything of it exists. A caller acting for a tenant
(`as_tenant`, a non-admin over HTTP) gets Forbidden, with nothing changed, for an id whose job or entry
belongs to someone else; the replace step checks the owner inside its own transaction. Ids shaped like run
items (`<run>-item-<n>`) are reserved for runs, so nobody can plant a job in another tenant's future run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.exceptions import WatchError
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.utils import now as utcnow
from rq.utils import utcformat

from ..backend import durable, events
from ..backend.counters import count_in, fields_for_enqueued
from ..backend.jobhash import queued_job_hash
from ..backend.queues import DEFAULT_JOB_TIMEOUT_S, RESULT_TTL_S, SERIALIZER, fetch_job, make_queue
from ..backend.replies import text
from ..errors import (
    BudgetSpent,
    Conflict,
    CorruptEntry,
    Forbidden,
    InvalidId,
    InvalidInput,
    NotFound,
    OverLimit,
    UnknownTaskName,
)
from ..limits.rules import generate_key, render_key
from ..limits.store import check_new_key
from ..retry.meta import gq, new_meta
from ..settings import max_limit_keys, webhook_allow
from ..tasks.bounds import check_json
from ..tasks.catalogue import CatalogueTask, check_kwargs
from ..tasks.catalogue import read as read_catalogue
from ..tasks.generate import JOB_FUNC, describe, validate_payload
from ..tasks.registry import TaskSpec, bind, lookup, resolve_name
from ..tenants.fair import adopt
from ..tenants.fairness import DEFAULT_PRIORITY, check_priority
from ..tenants.tenancy import entry_tenant, job_tenant
from ..usage.budget_store import admit, refuse_batch
from ..webhooks import subscription as webhook_subscription
from ..webhooks.urls import AllowList
from .submit import IdTaken, submit

LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
MAX_ID_LEN = 200
RUN_ITEM_ID = re.compile(r"(?P<run>.+)-item-(?P<index>[0-9]+)")  # runs/rules.py item_id(); fullmatch only
ENQUEUE_BATCH = 1000  # jobs per MULTI/EXEC in enqueue_many


@dataclass(frozen=True)
class EnqueueResult:
    job: Job
    created: bool

    @property
    def id(self) -> str:
        return self.job.id

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the job to end, reading its event stream (no polling loop): its result when it finished;
        raises `genqueue.JobDeadLettered` (dead-lettered), `genqueue.JobCanceled` (canceled), TimeoutError
        after `timeout` seconds (None: as long as it takes)."""
        from ..worker.cancel import JobCanceled
        from .events import JobDeadLettered, wait_for_outcome

        event = wait_for_outcome(self.job.connection, self.job.id, timeout)
        if event.event == "dead_lettered":
            raise JobDeadLettered(self.job.id, event)
        if event.event == "canceled":
            by, reason = event.data.get("by"), event.data.get("reason")
            raise JobCanceled(f"job {self.job.id} was canceled by {by}" + (f": {reason}" if reason else ""))
        if "result" in event.data:
            return event.data["result"]
        return self.job.return_value(refresh=True)  # a result too large for the event


def check_job_id(job_id: str) -> str:
    """RQ 2.12's rule (letters, digits, _ and -; ':' separates job and execution ids, and RQ raises a bare
    ValueError deep in create_job otherwise), plus a length cap."""
    if not job_id or len(job_id) > MAX_ID_LEN or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidId(f"invalid job id {job_id!r}: 1-{MAX_ID_LEN} letters, digits, _ or -")
    return job_id


def check_not_run_item(job_id: str) -> str:
    if RUN_ITEM_ID.fullmatch(job_id):
        raise InvalidId(f"invalid job id {job_id!r}: ids ending in -item-<number> are reserved for run items")
    return job_id


def owner_of(job: Job) -> str | None:
    return job_tenant(gq(job), job.args[0] if job.args else job.kwargs)


@dataclass(frozen=True)
class Call:
    """What a job runs: a task name and its JSON arguments."""

    func: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    result_ttl: int = RESULT_TTL_S


def generate_call(payload: dict[str, Any]) -> Call:
    return Call(JOB_FUNC, (validate_payload(payload),), {}, describe(payload))


def task_call(
    name: str, kwargs: dict[str, Any], catalogue: Mapping[str, CatalogueTask] | None = None
) -> tuple[Call, TaskSpec | CatalogueTask | None]:
    """The call of task `name` with `kwargs`, checked against its signature and limit key: the task registered
    in this process, else the one the live workers published (`catalogue`, tasks/catalogue.read), whose
    declared options then apply as a local task's do. A name in neither is UnknownTaskName, listing the names
    the workers know. `catalogue=None`: a task not registered here is enqueued unchecked (a producer that
    enqueues ahead of its workers)."""
    if not isinstance(kwargs, dict):
        raise InvalidInput(f"kwargs must be a JSON object, not {type(kwargs).__name__}")
    check_json(kwargs, f"kwargs for task {name}")
    local = lookup(name)
    spec: TaskSpec | CatalogueTask | None = local
    if local is not None and local.positional:  # the built-in generate: its kwargs are the payload
        return generate_call(kwargs), local
    if local is not None:
        bind(local, (), kwargs)
        if local.limit_key:
            render_key(local.limit_key, kwargs)  # the worker's rule (worker/limiting.limit_of): refused here
    name = resolve_name(name)
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise InvalidInput(f"invalid task name {name!r}")
    if spec is None and catalogue is not None:
        spec = catalogue.get(name)
        if spec is None:
            raise UnknownTaskName(unknown_task_message(name, catalogue))
        check_kwargs(spec, kwargs)
    ttl = spec.result_ttl if spec is not None and spec.result_ttl is not None else RESULT_TTL_S
    return Call(name, (), dict(kwargs), f"{name}()", ttl), spec


def limit_key_of(func: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The limit key a job of this call will run under, when this process knows its task: the generate
    task's `<provider>:<model>` (GENQUEUE_PROVIDER of this process, as workers of one deployment share it), a
    task's rendered `limit_key`; None for a task without one or unknown here."""
    import os

    spec = lookup(func)
    if spec is None:
        return None
    if spec.positional:
        return generate_key(os.environ.get("GENQUEUE_PROVIDER") or "simulated", args[0] if args else {})
    return render_key(spec.limit_key, kwargs) if spec.limit_key else None


def refuse_over_limit(connection: Redis, calls: Sequence[tuple[str, Sequence[Any], Mapping[str, Any]]]) -> None:
    """OverLimit when a call's estimate alone exceeds its key's unit limit (set in Redis, else declared by
    its task): such a job could never start. Only for tasks this process knows (their estimate is theirs);
    one read for all the calls' keys."""
    from ..limits.rules import over_limit
    from ..limits.store import unit_limits
    from ..tasks.estimates import estimate_of

    provider = os.environ.get("GENQUEUE_PROVIDER") or "simulated"
    estimated: list[tuple[str, TaskSpec, dict[str, float]]] = []
    for func, args, kwargs in calls:
        spec = lookup(func)
        if spec is None:
            continue
        estimate = estimate_of(spec, args, kwargs, provider)
        key = limit_key_of(func, args, dict(kwargs)) if estimate else None
        if key:
            estimated.append((key, spec, estimate))
    if not estimated:
        return
    limits = unit_limits(connection, sorted({key for key, _, _ in estimated}))
    for key, spec, estimate in estimated:
        declared = dict(spec.limits.units) if spec.limits is not None else {}
        why = over_limit(estimate, {**declared, **limits.get(key, {})})
        if why:
            raise OverLimit(f"job refused: {why} (limit key {key})")


def admit_limit_keys(connection: Redis, limit_keys: set[str | None]) -> None:
    """Refuse the enqueue when a new limit key would pass GENQUEUE_MAX_LIMIT_KEYS (limits.store.check_new_key)."""
    most = max_limit_keys()
    for key in sorted(k for k in limit_keys if k):
        check_new_key(connection, key, most)


def unknown_task_message(name: str, catalogue: Mapping[str, CatalogueTask]) -> str:
    known = ", ".join(sorted(catalogue)[:20]) + (" …" if len(catalogue) > 20 else "")
    where = f"the live workers run {known}" if catalogue else "no live worker has published its tasks"
    return f"no task {name!r}: {where} (enqueue ahead of the workers with --no-check / check=False)"


def catalogue_for(connection: Redis, name: str, check: bool) -> Mapping[str, CatalogueTask] | None:
    """The live workers' catalogue when `name` must be checked against it: not registered here, and check."""
    if not check or lookup(name) is not None:
        return None
    return read_catalogue(connection)


def enqueue_task(
    connection: Redis,
    queue_name: str | None,
    name: str,
    kwargs: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    max_retries: int | None = None,
    at: datetime | None = None,
    in_: timedelta | None = None,
    timeout: int | None = None,
    tenant: str | None = None,
    as_tenant: str | None = None,
    policy: Mapping[str, Mapping[str, Any]] | None = None,
    default_queue: str = "generation-queue",
    check: bool = True,
    priority: str | None = None,
    webhook: str | None = None,
    webhook_events: Sequence[str] | None = None,
) -> EnqueueResult:
    """Enqueue task `name` (registered here or only in the workers). The task's declared options are the
    defaults (queue, max_retries, timeout, policy, result_ttl, priority, webhook); the arguments here override them.
    A task not registered here is checked against the live workers' catalogue unless `check=False`."""
    call, spec = task_call(name, kwargs or {}, catalogue_for(connection, name, check))
    return enqueue_call(
        connection,
        queue_name or (spec.queue if spec else None) or default_queue,
        call,
        job_id=job_id,
        max_retries=max_retries if max_retries is not None else spec.max_retries if spec else None,
        at=at,
        in_=in_,
        timeout=timeout or (spec.timeout if spec else None),
        policy=policy or (dict(spec.policy) if spec is not None and spec.policy else None),
        tenant=tenant,
        as_tenant=as_tenant,
        priority=priority or (spec.priority if spec is not None else None),
        **declared_webhook(spec, webhook, webhook_events),
    )


def declared_webhook(spec: object, webhook: str | None, webhook_events: Sequence[str] | None) -> dict[str, Any]:
    """The webhook options of one enqueue: the caller's, else the task's declared ones (a task registered in this
    process: the workers' catalogue does not carry URLs)."""
    if webhook is not None or webhook_events is not None:
        return {"webhook": webhook, "webhook_events": webhook_events}
    return {"webhook": getattr(spec, "webhook", None), "webhook_events": getattr(spec, "webhook_events", None)}


def enqueue(connection: Redis, queue_name: str, payload: dict[str, Any], **options: Any) -> EnqueueResult:
    """Enqueue a job of the built-in generate task; the options are enqueue_call's."""
    return enqueue_call(connection, queue_name, generate_call(payload), **options)


def enqueue_call(
    connection: Redis,
    queue_name: str,
    call: Call,
    *,
    job_id: str | None = None,
    max_retries: int | None = None,
    at: datetime | None = None,
    in_: timedelta | None = None,
    timeout: int | None = None,
    meta: dict | None = None,
    policy: Mapping[str, Mapping[str, Any]] | None = None,
    tenant: str | None = None,
    as_tenant: str | None = None,
    priority: str | None = None,
    resend: bool = False,
    webhook: str | None = None,
    webhook_events: Sequence[str] | None = None,
) -> EnqueueResult:
    """Enqueue `call`; `policy` overrides this job's retry policy per kind, e.g. {"TRANSIENT": {"max": 2}}.
    `resend`: this is the same enqueue sent again (after NotDurable or a lost reply): a job that already has
    the id, in any state (finished or failed included), is that enqueue, not an id to reuse; it is returned
    (created False) once the replicas have it, and never run again.
    `tenant` owns the new job; `as_tenant` (a non-admin caller) may only reuse ids that tenant owns.
    `priority` (high, normal, low) orders it among the queue's jobs (tenants/fairness.py). `webhook`: a URL
    called (signed) on `webhook_events` of the job (default: finished, dead_lettered, canceled): webhooks/."""
    priority = check_priority(priority)
    hook = webhook_subscription.for_enqueue(webhook, webhook_events, AllowList.parse(webhook_allow()))
    meta = _job_meta(meta or new_meta(max_retries, tenant=tenant), hook, priority, policy)
    if job_id is not None:
        check_not_run_item(check_job_id(job_id))
    if max_retries is not None and max_retries < 0:
        raise InvalidInput("max_retries must be 0 or more")
    when = at or (datetime.now(UTC) + in_ if in_ else None)
    admit_limit_keys(connection, {limit_key_of(call.func, call.args, call.kwargs)})
    refuse_over_limit(connection, [(call.func, call.args, call.kwargs)])
    try:
        when = within_budget(
            connection, job_tenant(meta["genqueue"], call.args[0] if call.args else call.kwargs), meta, when
        )
    except BudgetSpent:
        existing = fetch_job(connection, job_id) if job_id is not None else None
        if existing is None or existing.get_status(refresh=False) not in LIVE_STATUSES:
            raise
        _check_owner(existing.id, owner_of(existing), as_tenant)  # an idempotent repeat of a live job: that job
        return EnqueueResult(existing, False)
    queue = make_queue(connection, queue_name)

    def build() -> Job:
        job = queue.create_job(
            call.func,
            args=call.args,
            kwargs=call.kwargs,
            job_id=job_id,
            timeout=timeout or DEFAULT_JOB_TIMEOUT_S,
            result_ttl=call.result_ttl,
            meta=meta,
            description=call.description,
            status=JobStatus.SCHEDULED if when else JobStatus.QUEUED,
        )
        if hook is not None and job_id is None:  # a fresh id: before the job exists, no event can be missed
            webhook_subscription.register(connection, job.id, hook, tenant)
        return job

    if job_id is None:
        job = build()
        return EnqueueResult(submit(queue, job, when, unique=False), True)

    def subscribed(result: EnqueueResult) -> EnqueueResult:
        return _subscribed(connection, hook, tenant, result)

    for _ in range(5):
        try:
            return subscribed(EnqueueResult(submit(queue, build(), when, unique=True), True))
        except IdTaken as taken:
            if taken.dead:
                _refuse_dead(connection, queue_name, job_id, as_tenant)
                continue  # the entry left between the script and the read: try again
            existing = fetch_job(connection, job_id)
            if existing is None:
                continue  # it expired between the check and the fetch: try again
            _check_owner(job_id, owner_of(existing), as_tenant)
            if resend or existing.get_status(refresh=False) in LIVE_STATUSES:
                durable.confirm(connection, f"job {job_id}")  # a retry after NotDurable: replicated by now?
                return subscribed(EnqueueResult(existing, False))
            _delete_if_done(connection, existing, as_tenant)
    raise Conflict(f"job {job_id} keeps changing state; try again")


def _job_meta(
    meta: dict,
    hook: webhook_subscription.Subscription | None,
    priority: str,
    policy: Mapping[str, Mapping[str, Any]] | None,
) -> dict:
    """The new job's genqueue meta with its webhook, priority (when not the default) and policy override."""
    if hook is not None:
        meta["genqueue"].update(hook.as_meta())
    if priority != DEFAULT_PRIORITY:
        meta["genqueue"]["priority"] = priority
    if policy:
        check_policy(policy)
        meta["genqueue"]["policy"] = policy
    return meta


def within_budget(connection: Redis, tenant: str | None, meta: dict, when: datetime | None) -> datetime | None:
    """The budget check (usage/budget_store.admit): BudgetSpent when the tenant's budget is spent and refuses;
    when it parks, the job is scheduled for the period's reset (or later, if it was already scheduled later)
    and its bookkeeping says so (`budget_parked_until`)."""
    resets = admit(connection, tenant)
    if resets is None:
        return when
    meta["genqueue"]["budget_parked_until"] = resets
    reset = datetime.fromtimestamp(resets, UTC)
    return reset if when is None or when.astimezone(UTC) < reset else when


def _subscribed(
    connection: Redis, hook: webhook_subscription.Subscription | None, tenant: str | None, result: EnqueueResult
) -> EnqueueResult:
    """An explicit id subscribes once the job is known to be the caller's (created, or its own live job
    returned): naming someone else's id never subscribes to their job (webhooks/subscription.py)."""
    if hook is not None:
        after = webhook_subscription.start_of_current_job(connection, result.id)
        webhook_subscription.register(connection, result.id, hook, tenant, after=after, replace=result.created)
    return result


def _check_owner(job_id: str, owner: str | None, as_tenant: str | None) -> None:
    if as_tenant is not None and owner != as_tenant:
        raise Forbidden(f"job {job_id} belongs to another tenant")


def _refuse_dead(connection: Redis, queue_name: str, job_id: str, as_tenant: str | None) -> None:
    """Raise for an id held by a DLQ entry: Forbidden (someone else's) or Conflict (replay or delete it)."""
    from ..dlq.store import DLQStore

    try:
        owner = entry_tenant(DLQStore(connection, queue_name, retention_s=0).get(job_id))
    except NotFound:
        return
    except CorruptEntry:
        owner = None  # unreadable: nobody but an admin may reuse the id
    _check_owner(job_id, owner, as_tenant)
    raise Conflict(
        f"job {job_id} is dead-lettered; replay it (genqueue dlq retry / jobs retry) or delete its DLQ "
        "entry before reusing the id"
    )


def enqueue_many(
    connection: Redis,
    queue_name: str,
    payloads: Sequence[dict[str, Any]],
    *,
    max_retries: int | None = None,
    timeout: int | None = None,
    batch: int = ENQUEUE_BATCH,
) -> list[Job]:
    """Enqueue many payloads with generated job ids: one MULTI/EXEC round trip per `batch` jobs, every
    payload validated before any is enqueued. Generated ids make it not idempotent; a batch that must
    survive being submitted twice is a run (genqueue.runs.submit). The job hashes are the ones RQ's
    Queue.enqueue_many writes (jobhash.py), built without RQ's per-job Python."""
    if max_retries is not None and max_retries < 0:
        raise InvalidInput("max_retries must be 0 or more")
    for payload in payloads:
        validate_payload(payload)
    admit_limit_keys(connection, {limit_key_of(JOB_FUNC, [p], {}) for p in payloads})
    refuse_over_limit(connection, [(JOB_FUNC, [p], {}) for p in payloads])
    refuse_batch(connection, None, "enqueue_many")  # jobs with no tenant: the "*" budget, if any
    queue = make_queue(connection, queue_name)
    ids: list[str] = []
    for start in range(0, len(payloads), batch):
        enqueued_at = utcformat(utcnow())
        chunk = [(str(uuid4()), payload) for payload in payloads[start : start + batch]]
        with connection.pipeline() as pipe:
            pipe.sadd(queue.redis_queues_keys, queue.key)
            for job_id, payload in chunk:
                pipe.hset(
                    Job.key_for(job_id),
                    mapping=queued_job_hash(
                        queue_name=queue_name,
                        func=JOB_FUNC,
                        args=[payload],
                        kwargs={},
                        description=describe(payload),
                        timeout=timeout or DEFAULT_JOB_TIMEOUT_S,
                        result_ttl=RESULT_TTL_S,
                        meta=new_meta(max_retries),
                        enqueued_at=enqueued_at,
                    ),
                )
            if chunk:
                pipe.rpush(queue.key, *(job_id for job_id, _ in chunk))
                adopt(pipe, queue_name, [job_id for job_id, _ in chunk])
            count_in(pipe, queue_name, fields_for_enqueued(len(chunk)))
            for job_id, _ in chunk:
                events.add(pipe, job_id, "enqueued")
            pipe.execute()
        # WAIT is not honoured inside MULTI: one more round trip per batch when GENQUEUE_WAIT_REPLICAS is set.
        durable.confirm(connection, f"batch of {len(chunk)} jobs")
        ids += [job_id for job_id, _ in chunk]
    return [Job(job_id, connection=connection, serializer=SERIALIZER) for job_id in ids]


def check_policy(policy: object) -> None:
    from ..retry.policy import checked_overrides

    checked_overrides(policy, "policy")


def _delete_if_done(connection: Redis, job: Job, as_tenant: str | None) -> None:
    """Drop a finished/failed job's hash so its id can be reused, unless it changed state or owner meanwhile
    (both re-read after WATCH: the owner is checked inside the transaction that deletes)."""
    with connection.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            status = pipe.hget(job.key, "status")
            if status is None or text(status) in {s.value for s in LIVE_STATUSES}:
                return
            if as_tenant is not None:
                current = fetch_job(connection, job.id)
                if current is None:
                    return
                _check_owner(job.id, owner_of(current), as_tenant)
            pipe.multi()
            job.delete(pipeline=pipe, remove_from_queue=False)
            pipe.execute()
        except WatchError:
            return
