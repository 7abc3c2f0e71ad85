"""Runs: a batch of generation jobs submitted, watched and retried as one unit.

A run is a Redis hash `genqueue:run:<run_id>` (queue, item count, a digest of the items, options, and a
retry-failed counter) plus its items: ordinary generation jobs with the deterministic ids
`<run_id>-item-<index>` (0-based, in file order; RQ refuses ':' in job ids, see `runs/rules.py`). Item state is
never copied into the run hash; it is read from where each job is (its RQ hash, or its DLQ entry), so the
run can never disagree with its jobs.

- submit: creating an item is one WATCH/MULTI that re-checks "no RQ hash and no DLQ entry with this id",
  so resubmitting (or two concurrent submits) never runs an item twice, whatever state it is in.
- a run's items are its own: a run with a tenant is refused whole (Forbidden, nothing written) when any of
  its item ids is held by another tenant's job or entry, each batch re-checks the owners of the items it
  finds under its WATCH, and a reader never shows or retries an item whose owner is not the run's tenant
  (it reads as `missing`). Plain enqueue refuses item-shaped ids (jobs.enqueue.RUN_ITEM_ID), so such an
  item can only be left from before that rule.
- retry-failed: one WATCH/MULTI over the run hash and every item's job hash and DLQ entry; the status
  change and the enqueue of all retried items are in that one EXEC, so there is nothing to compensate.

The rules themselves (ids, the run file, status, eligibility) are pure and live in `runs/rules.py`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT
from rq.job import Job, JobStatus

from ..backend import durable, events
from ..backend.counters import count_in, fields_for_enqueued
from ..backend.queues import DEFAULT_JOB_TIMEOUT_S, SERIALIZER, make_queue
from ..backend.replies import text
from ..dlq.entry import decode, iso
from ..dlq.store import DLQStore
from ..errors import Conflict, CorruptEntry, Forbidden, GenqueueError, InvalidInput, NotFound
from ..jobs.enqueue import admit_limit_keys, generate_call, limit_key_of, owner_of, refuse_over_limit, task_call
from ..jobs.manual_retry import (
    charged_retries,
    confirm_refusal,
    last_failure,
    manual_retry_record,
    requeue_dead_in,
    requeue_failed_in,
)
from ..retry.meta import new_meta
from ..tasks.catalogue import read as read_catalogue
from ..tasks.generate import JOB_FUNC
from ..tasks.registry import lookup, resolve_name
from ..tenants.credits import credits_key
from ..tenants.credits import require as require_credits
from ..tenants.fair import adopt
from ..tenants.fairness import DEFAULT_PRIORITY, check_priority
from ..tenants.tenancy import entry_tenant
from ..usage.budget_store import refuse_batch
from .rules import (
    ACTIVE,
    CORRUPT,
    DEFAULT_LIMIT,
    STATUS_ORDER,
    FailedItem,
    NothingToRetry,
    RetryClass,
    RetryPlan,
    check_limit,
    check_run_id,
    checked_plan,
    default_run_id,
    item_checker,
    item_id,
    item_status,
    run_digest,
    run_key,
    run_status,
)

SUBMIT_BATCH = 500  # items per create transaction: bounded WATCH lists and MULTI blocks
MAX_TX_ATTEMPTS = 10


# -- stored state --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    run_id: str
    queue: str
    items: int
    digest: str
    max_retries: int | None
    created_at: str
    source: str | None = None
    retries: int = 0  # how many retry-failed transactions committed
    last_retry_at: str | None = None
    tenant: str | None = None  # who submitted it (over HTTP: the token's tenant); see tenancy.py
    retry_limit: int = DEFAULT_LIMIT  # charged manual retries allowed per item (max_retry_count, 1-10)
    task: str | None = None  # every item's task (None: the built-in generate, each line its payload)
    priority: str | None = None  # every item's priority (None: the task's default, else normal)

    @classmethod
    def from_hash(cls, run_id: str, raw: Mapping[bytes | str, bytes | str]) -> Run:
        f = {text(k): text(v) for k, v in raw.items()}
        return cls(
            run_id,
            f["queue"],
            int(f["items"]),
            f["digest"],
            int(f["max_retries"]) if f.get("max_retries") else None,
            f["created_at"],
            f.get("source") or None,
            int(f.get("retries") or 0),
            f.get("last_retry_at") or None,
            f.get("tenant") or None,
            int(f.get("retry_limit") or DEFAULT_LIMIT),
            f.get("task") or None,
            f.get("priority") or None,
        )

    def to_hash(self) -> dict[FieldT, EncodableT]:
        return {
            "run_id": self.run_id,
            "queue": self.queue,
            "items": str(self.items),
            "digest": self.digest,
            "max_retries": "" if self.max_retries is None else str(self.max_retries),
            "created_at": self.created_at,
            "source": self.source or "",
            "retries": str(self.retries),
            "tenant": self.tenant or "",
            "retry_limit": str(self.retry_limit),
            "task": self.task or "",
            "priority": self.priority or "",
        }

    def item_ids(self) -> list[str]:
        return [item_id(self.run_id, i) for i in range(self.items)]


@dataclass
class ItemState:
    index: int
    job_id: str
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    entry: dict[str, Any] | None = None  # dead items: the DLQ entry
    job: Job | None = None  # failed/stopped/canceled items: the RQ job
    corrupt: bool = False  # the DLQ entry is not readable JSON: nothing to re-create the job from

    def failed_item(self) -> FailedItem | None:
        if self.status == "dead":
            if self.entry is None:  # corrupt, or replayed between two reads (retry-failed then reads again)
                return FailedItem(self.index, self.job_id, self.status, None, CORRUPT if self.corrupt else None, 0)
            err = self.entry.get("error") or {}
            return FailedItem(
                self.index,
                self.job_id,
                self.status,
                err.get("kind"),
                self.entry.get("reason"),
                charged_retries(self.entry.get("history") or []),
            )
        if self.status in ("failed", "stopped", "canceled"):
            last = last_failure(self.history) or {}
            return FailedItem(
                self.index,
                self.job_id,
                self.status,
                last.get("kind"),
                last.get("reason"),
                charged_retries(self.history),
            )
        return None


@dataclass
class Snapshot:
    run: Run
    items: list[ItemState]

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(i.status for i in self.items)
        return {s: c[s] for s in sorted(c, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 99)}

    @property
    def status(self) -> str:
        return run_status(self.counts)

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.status not in ACTIVE)

    def failed_items(self) -> list[FailedItem]:
        return [f for i in self.items if (f := i.failed_item()) is not None]

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "run_id": r.run_id,
            "queue": r.queue,
            "status": self.status,
            "items": r.items,
            "done": self.done,
            "counts": self.counts,
            "created_at": r.created_at,
            "source": r.source,
            "max_retries": r.max_retries,
            "retries": r.retries,
            "last_retry_at": r.last_retry_at,
            "tenant": r.tenant,
            "max_retry_count": r.retry_limit,
            "failed_items": [
                {
                    "id": f.job_id,
                    "status": f.status,
                    "kind": f.kind,
                    "reason": f.reason,
                    "retry": str(f.retry_class),
                    "charged_retries": f.charged_retries,
                }
                for f in self.failed_items()
            ],
        }


def _store(connection: Redis, queue: str, ttl_s: int) -> DLQStore:
    return DLQStore(connection, queue, retention_s=ttl_s)


def load_run(connection: Redis, run_id: str) -> Run:
    raw = connection.hgetall(run_key(check_run_id(run_id)))
    if not raw:
        raise NotFound(f"no run {run_id}")
    return Run.from_hash(run_id, raw)


def read_items(connection: Redis, run: Run, store: DLQStore, *, details: bool = True) -> list[ItemState]:
    """Every item's state, pipelined. `details` also reads DLQ entries and failed jobs (retry-failed needs
    them; a progress bar does not)."""
    ids = run.item_ids()
    with connection.pipeline(transaction=False) as reads:
        for job_id in ids:
            reads.hget(Job.key_for(job_id), "status")
            reads.exists(store.keys.entry(job_id))
        flat = reads.execute()
    rq_statuses = [None if s is None else s.decode() for s in flat[0::2]]
    need_meta = [i for i, s in enumerate(rq_statuses) if s == JobStatus.SCHEDULED.value]
    with connection.pipeline(transaction=False) as reads:
        for i in need_meta:
            reads.hget(Job.key_for(ids[i]), "meta")
        metas = dict(zip(need_meta, reads.execute(), strict=False))
    items = []
    for i, (job_id, rq_status, in_dlq) in enumerate(zip(ids, rq_statuses, flat[1::2], strict=False)):
        history = _history(metas.get(i))
        items.append(ItemState(i, job_id, item_status(rq_status, bool(history), bool(in_dlq)), history))
    if details:
        _read_details(connection, store, items, run.tenant)
    return items


def _history(raw_meta: bytes | None) -> list[dict[str, Any]]:
    if not raw_meta:
        return []
    try:
        meta = SERIALIZER.loads(raw_meta)
        return list((meta.get("genqueue") or {}).get("history") or [])
    except (ValueError, AttributeError, TypeError):
        return []


def _owners(connection: Redis, store: DLQStore, ids: Sequence[str]) -> dict[str, str | None]:
    """The owner of each id that exists as a job hash or a DLQ entry (an unreadable one: None)."""
    jobs = Job.fetch_many(list(ids), connection=connection, serializer=SERIALIZER) if ids else []
    owners = {job.id: owner_of(job) for job in jobs if job is not None}
    rest = [i for i in ids if i not in owners]
    for job_id, raw in zip(rest, connection.mget([store.keys.entry(i) for i in rest]) if rest else [], strict=False):
        if raw is not None:
            try:
                owners[job_id] = entry_tenant(decode(raw, job_id))
            except CorruptEntry:
                owners[job_id] = None
    return owners


def _refuse_foreign(run: Run, owners: Mapping[str, str | None]) -> None:
    foreign = sorted(i for i, owner in owners.items() if owner != run.tenant)
    if run.tenant is not None and foreign:
        named = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise Forbidden(f"run {run.run_id}: item id(s) {named} belong to another tenant; choose another run id")


def _foreign_check(connection: Redis, store: DLQStore, run: Run) -> None:
    """Before anything is written: no item id of this run may be another tenant's."""
    ids = run.item_ids()
    for start in range(0, len(ids), SUBMIT_BATCH):
        chunk = ids[start : start + SUBMIT_BATCH]
        with connection.pipeline(transaction=False) as reads:
            for job_id in chunk:
                reads.exists(Job.key_for(job_id), store.keys.entry(job_id))
            present = [job_id for job_id, n in zip(chunk, reads.execute(), strict=False) if n]
        _refuse_foreign(run, _owners(connection, store, present))


def _read_details(connection: Redis, store: DLQStore, items: list[ItemState], tenant: str | None = None) -> None:
    dead = [i for i in items if i.status == "dead"]
    with connection.pipeline(transaction=False) as reads:
        for item in dead:
            reads.get(store.keys.entry(item.job_id))
        raws = reads.execute()
    for item, raw in zip(dead, raws, strict=False):
        try:
            item.entry = None if raw is None else decode(raw, item.job_id)
        except CorruptEntry:
            item.corrupt = True
    failed = [i for i in items if i.status in ("failed", "stopped", "canceled")]
    # One round trip for all of them (this runs inside retry-failed's WATCH window), not one per item.
    jobs = Job.fetch_many([i.job_id for i in failed], connection=connection, serializer=SERIALIZER) if failed else []
    for item, job in zip(failed, jobs, strict=True):
        item.job = job
        item.history = list(((job.meta if job else {}).get("genqueue") or {}).get("history") or [])
    if tenant is not None:
        for item in dead + failed:
            owner = entry_tenant(item.entry) if item.entry is not None else owner_of(item.job) if item.job else tenant
            if owner != tenant:  # another tenant's job under an item-shaped id: not this run's to show or retry
                item.status, item.entry, item.job, item.history, item.corrupt = "missing", None, None, [], False


def snapshot(connection: Redis, run_id: str, *, ttl_s: int, details: bool = True) -> Snapshot:
    run = load_run(connection, run_id)
    return Snapshot(run, read_items(connection, run, _store(connection, run.queue, ttl_s), details=details))


# -- submit --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitResult:
    run: Run
    created: bool  # False: this run was submitted before (same items and options)
    enqueued: int  # items created now; the rest already existed somewhere


def submit(
    connection: Redis,
    queue_name: str,
    payloads: Sequence[dict[str, Any]],
    *,
    ttl_s: int,
    run_id: str | None = None,
    max_retries: int | None = None,
    source: str | None = None,
    tenant: str | None = None,
    retry_limit: int = DEFAULT_LIMIT,
    task: str | None = None,
    priority: str | None = None,
) -> SubmitResult:
    """Create the run (or find the identical one) and every item not yet created. `ttl_s` bounds how long
    the run record and its finished items are kept (the DLQ retention, so a run outlives none of its parts)."""
    if max_retries is not None and max_retries < 0:
        raise InvalidInput("max_retries must be 0 or more")
    task = None if task is None or lookup(task) is lookup(JOB_FUNC) else resolve_name(task)
    # A task the live workers published is checked as they will run it; one nobody knows yet is not.
    published = read_catalogue(connection).get(task) if task is not None and lookup(task) is None else None
    check = item_checker(task, published)
    for payload in payloads:
        check(payload)
    func = task or JOB_FUNC
    admit_limit_keys(connection, {limit_key_of(func, [p] if task is None else [], p if task else {}) for p in payloads})
    refuse_over_limit(connection, [(func, [p] if task is None else [], p if task else {}) for p in payloads])
    refuse_batch(connection, tenant, "a run")
    digest = run_digest(payloads, max_retries, task)
    run_id = check_run_id(run_id) if run_id else default_run_id(digest)
    wanted = Run(
        run_id,
        queue_name,
        len(payloads),
        digest,
        max_retries,
        iso(time.time()),
        source,
        tenant=tenant,
        retry_limit=check_limit(retry_limit),
        task=task,
        priority=None if priority is None else check_priority(priority),
    )
    queue, store = make_queue(connection, queue_name), _store(connection, queue_name, ttl_s)
    _foreign_check(connection, store, wanted)
    run, created = _create_or_match(connection, wanted, ttl_s)
    enqueued = sum(
        _submit_batch(connection, queue, store, run, payloads, start, ttl_s)
        for start in range(0, len(payloads), SUBMIT_BATCH)
    )
    connection.expire(run_key(run_id), ttl_s)
    # With GENQUEUE_WAIT_REPLICAS: acknowledged once the replicas have the run and every item (a resubmit of
    # the same run after NotDurable creates nothing twice and is acknowledged the same way).
    durable.confirm(connection, f"run {run_id}")
    return SubmitResult(run, created, enqueued)


def _create_or_match(connection: Redis, wanted: Run, ttl_s: int) -> tuple[Run, bool]:
    key = run_key(wanted.run_id)
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(key)
                raw = pipe.hgetall(key)
                if raw:
                    existing = Run.from_hash(wanted.run_id, raw)
                    if wanted.tenant is not None and existing.tenant != wanted.tenant:
                        raise Forbidden(f"run {wanted.run_id} belongs to another tenant")
                    if existing.queue != wanted.queue:
                        raise Conflict(f"run {wanted.run_id} belongs to queue {existing.queue}, not {wanted.queue}")
                    if (existing.digest, existing.items) != (wanted.digest, wanted.items):
                        raise Conflict(
                            f"run {wanted.run_id} already exists with different items or --max-retries; "
                            "resubmit the same file, or choose another --run-id"
                        )
                    return existing, False
                pipe.multi()
                pipe.hset(key, mapping=wanted.to_hash())
                pipe.expire(key, ttl_s)
                pipe.execute()
                return wanted, True
            except WatchError:
                pipe.reset()
    raise Conflict(f"run {wanted.run_id} keeps changing; try again")


def _submit_batch(
    connection: Redis, queue, store: DLQStore, run: Run, payloads: Sequence[dict[str, Any]], start: int, ttl_s: int
) -> int:
    """Create the items of one batch that exist nowhere. `jobs.enqueue.enqueue` is not used: with an explicit id it
    replaces a finished job and cannot see a dead one in the DLQ, and either would run an item twice."""
    indexes = range(start, min(start + SUBMIT_BATCH, len(payloads)))
    ids = [item_id(run.run_id, i) for i in indexes]
    keys = [k for job_id in ids for k in (Job.key_for(job_id), store.keys.entry(job_id))]
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(*keys)
                with connection.pipeline(transaction=False) as reads:
                    for key in keys:
                        reads.exists(key)
                    present = reads.execute()
                missing = [i for n, i in enumerate(indexes) if not (present[2 * n] or present[2 * n + 1])]
                if run.tenant is not None and len(missing) < len(ids):  # owners re-read under this WATCH
                    found = [job_id for n, job_id in enumerate(ids) if present[2 * n] or present[2 * n + 1]]
                    _refuse_foreign(run, _owners(connection, store, found))
                if not missing:
                    return 0
                pipe.multi()
                for i in missing:
                    queue.enqueue_job(_item_job(queue, run, i, payloads[i], ttl_s), pipeline=pipe)
                    events.add(pipe, item_id(run.run_id, i), "enqueued", {"run": run.run_id})
                adopt(pipe, queue.name, [item_id(run.run_id, i) for i in missing])  # a run shares the queue fairly
                count_in(pipe, queue.name, fields_for_enqueued(len(missing)))
                pipe.execute()
                return len(missing)
            except WatchError:
                pipe.reset()  # a concurrent submit created some of them: check again
    raise Conflict(f"run {run.run_id} items keep changing; try again")


def _item_job(queue, run: Run, index: int, payload: dict[str, Any], ttl_s: int) -> Job:
    call = generate_call(payload) if run.task is None else task_call(run.task, payload)[0]
    spec = lookup(call.func)
    timeout = (spec.timeout if spec is not None and not spec.positional else None) or DEFAULT_JOB_TIMEOUT_S
    meta = new_meta(run.max_retries, tenant=run.tenant)
    priority = run.priority or (spec.priority if spec is not None else None)
    if priority is not None and priority != DEFAULT_PRIORITY:
        meta["genqueue"]["priority"] = priority
    return queue.create_job(
        call.func,
        args=call.args,
        kwargs=call.kwargs,
        job_id=item_id(run.run_id, index),
        timeout=timeout,
        result_ttl=ttl_s,
        meta=meta,
        status=JobStatus.QUEUED,
        description=call.description,
    )


# -- retry-failed --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryFailedResult:
    run_id: str
    queue: str
    run_retry: int  # this retry-failed's number for the run
    free: list[str]
    charged: list[str]
    never: list[str]
    credits_debited: int = 0


def retry_failed(
    connection: Redis,
    run_id: str,
    *,
    ttl_s: int,
    limit: int | None = None,
    check_tenant_access: Callable[[str | None], None] | None = None,
    by: str | None = None,
) -> RetryFailedResult:
    """Retry every failed item except PERMANENT ones, all or nothing, in one transaction. A run whose tenant
    has a credit balance pays one credit per charged item in that same transaction (credits.py).
    `check_tenant_access(run.tenant)` raises Forbidden for a caller who may not touch this run."""
    if limit is not None:
        check_limit(limit)
    key = run_key(check_run_id(run_id))
    first_seen: int | None = None
    with connection.pipeline() as pipe:
        for _ in range(MAX_TX_ATTEMPTS):
            try:
                pipe.watch(key)
                raw = pipe.hgetall(key)
                if not raw:
                    raise NotFound(f"no run {run_id}")
                run = Run.from_hash(run_id, raw)
                if check_tenant_access is not None:
                    check_tenant_access(run.tenant)
                if first_seen is not None and run.retries > first_seen:
                    raise Conflict(f"run {run_id} was just retried by someone else (retry #{run.retries})")
                first_seen = run.retries
                store = _store(connection, run.queue, ttl_s)
                # Reads after WATCH: if any item moves before our EXEC (a worker, an admin, a second
                # retry-failed), the EXEC fails and we decide again from fresh state.
                watched = [k for i in run.item_ids() for k in (Job.key_for(i), store.keys.entry(i))]
                if run.tenant is not None:
                    watched.append(credits_key(run.tenant))  # the payer's balance, debited in the same EXEC
                pipe.watch(*watched)
                balance = None if run.tenant is None else pipe.get(credits_key(run.tenant))
                have = None if balance is None else int(balance)
                snap = Snapshot(run, read_items(connection, run, store, details=True))
                try:
                    plan = checked_plan(
                        run_id, snap.counts, snap.failed_items(), run.retry_limit if limit is None else limit
                    )
                    require_credits(run.tenant, have, len(plan.charged))
                except GenqueueError as refusal:
                    confirm_refusal(pipe)  # the reads straddled someone's EXEC? then read again
                    if isinstance(refusal, Conflict | NothingToRetry):  # a Continue sent again after NotDurable
                        durable.confirm(connection, f"continue of run {run_id}")
                    raise
                return _requeue(
                    pipe,
                    connection,
                    snap,
                    plan,
                    store,
                    ttl_s,
                    debit=len(plan.charged) if have is not None else 0,
                    by=by,
                )
            except WatchError:
                pipe.reset()
    raise Conflict(f"run {run_id} keeps changing; try again")


def _requeue(
    pipe,
    connection: Redis,
    snap: Snapshot,
    plan: RetryPlan,
    store: DLQStore,
    ttl_s: int,
    *,
    debit: int = 0,
    by: str | None = None,
) -> RetryFailedResult:
    run = snap.run
    run_retry = run.retries + 1
    queue = make_queue(connection, run.queue)
    pipe.multi()
    for item in plan.to_retry:
        state = snap.items[item.index]
        record = manual_retry_record(
            charged=item.retry_class is RetryClass.CHARGED,
            via="runs retry-failed",
            previous_status=item.status,
            kind=item.kind,
            reason=item.reason,
            run_retry=run_retry,
            by=by,
        )
        if debit and run.tenant is not None and item.retry_class is RetryClass.CHARGED:
            record["credit"] = run.tenant  # debited below: given back if the job is canceled (jobs/cancel.py)
        if state.entry is not None:
            requeue_dead_in(pipe, queue, store, state.entry, record, result_ttl=ttl_s)
        elif state.job is not None:
            requeue_failed_in(pipe, queue, state.job, record)
        else:
            raise WatchError(f"{item.job_id} vanished between two reads")  # decide again from fresh state
    # The counter is part of the same EXEC: it is how a concurrent retry-failed learns it lost.
    pipe.hset(run_key(run.run_id), mapping={"retries": str(run_retry), "last_retry_at": iso(time.time())})
    if debit and run.tenant is not None:  # only a tenant with a balance is debited
        pipe.decrby(credits_key(run.tenant), debit)
    pipe.expire(run_key(run.run_id), ttl_s)
    pipe.execute()
    durable.confirm(connection, f"continue of run {run.run_id}")  # WAIT is not honoured inside MULTI
    ids = lambda items: [i.job_id for i in items]  # noqa: E731
    return RetryFailedResult(
        run.run_id, run.queue, run_retry, ids(plan.free), ids(plan.charged), ids(plan.never), debit
    )
