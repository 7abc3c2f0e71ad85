"""Bulk replay and purge by filter: batched, pipelined, each batch one WATCH/MULTI, resumable by cursor."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from redis.exceptions import WatchError
from rq.job import JobStatus
from rq.utils import now as utcnow
from rq.utils import utcformat

from ..backend import durable, events
from ..backend.queues import make_queue
from ..errors import GenqueueError, NotDurable
from ..tenants.fair import adopt
from .entry import decode
from .replay import DEFAULT_REPLAY_CAP, LIVE, REFUSED, job_hash, replay
from .store import DLQStore, Filters, parse_cursor

BATCH = 200


@dataclass
class BulkResult:
    done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    cursor: str | None = None  # where to resume: the last entry handled
    ids: list[str] = field(default_factory=list)
    more: bool = False  # stopped at the caller's limit; entries may remain past `cursor`

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def matching(
    store: DLQStore, filters: Filters, cursor: str | None = None, batch: int = BATCH
) -> Iterator[list[tuple[str, float, bytes]]]:
    """Batches of (job_id, score, raw entry) matching the filters, newest first, from `cursor` on."""
    source = store._source_key(filters)
    high = "+inf" if filters.until is None else repr(filters.until)
    low = "-inf" if filters.since is None else repr(filters.since)
    after_id = None
    if cursor:
        high, after_id = parse_cursor(cursor)
    ids = store._walk(source, high, low, after_id, batch=batch)
    while True:
        chunk = [pair for _, pair in zip(range(batch), ids, strict=False)]
        if not chunk:
            return
        raws = cast("list[bytes | None]", store.connection.mget([store.keys.entry(job_id) for job_id, _ in chunk]))
        out = []
        for (job_id, score), raw in zip(chunk, raws, strict=False):
            if raw is None:
                continue
            if filters.indexed() and len(filters.indexed()) > 1:
                try:
                    if not filters.matches(decode(raw, job_id)):
                        continue
                except GenqueueError:
                    continue
            out.append((job_id, score, raw))
        if out:
            yield out


def count_matching(store: DLQStore, filters: Filters) -> int:
    if not filters.indexed() and filters.since is None and filters.until is None:
        return store.count()
    return sum(len(b) for b in matching(store, filters))


def _throttle(started: float, done: int, rate: float | None) -> None:
    if rate:
        ahead = done / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


def bulk_replay(
    store: DLQStore,
    filters: Filters,
    *,
    cursor: str | None = None,
    rate: float | None = None,
    force: bool = False,
    replay_cap: int = DEFAULT_REPLAY_CAP,
    progress: Callable[[int], None] = lambda n: None,
    limit: int | None = None,
    acknowledge: bool = True,
) -> BulkResult:
    """Replay every matching entry (at most `limit` of them: then `result.cursor` resumes). Each batch is one
    WATCH/MULTI over its entries and job ids; a batch that loses a race is redone entry by entry with the
    single-entry replay (same exactly-once rule). With GENQUEUE_WAIT_REPLICAS each batch is acknowledged by
    the replicas before the next (NotDurable stops the run; running it again replays what is left).
    `acknowledge=False`: nobody is told (the scheduler's auto-retry)."""
    result = BulkResult(cursor=cursor)
    queue = make_queue(store.connection, store.keys.queue)
    started = time.monotonic()
    size = BATCH if not rate else max(1, min(BATCH, int(rate)))
    if limit is not None:
        size = max(1, min(size, limit))
    handled = 0
    for batch in matching(store, filters, cursor, size):
        if _replay_batch(store, queue, batch, result, force=force, replay_cap=replay_cap):
            if acknowledge:
                durable.confirm(store.connection, f"bulk replay of {len(batch)} entries")
        else:
            for job_id, _, _ in batch:
                try:
                    replay(store, job_id, force=force, replay_cap=replay_cap, acknowledge=acknowledge)
                    result.done += 1
                    result.ids.append(job_id)
                except NotDurable:
                    raise
                except GenqueueError as exc:
                    result.skip(type(exc).__name__)
        result.cursor = f"{batch[-1][1]!r}:{batch[-1][0]}"
        progress(len(batch))
        _throttle(started, result.done, rate)
        handled += len(batch)
        if limit is not None and handled >= limit:
            result.more = True
            break
    return result


def _replay_batch(store: DLQStore, queue, batch, result: BulkResult, *, force: bool, replay_cap: int) -> bool:
    entry_keys = [store.keys.entry(job_id) for job_id, _, _ in batch]
    job_keys = [queue.job_class.key_for(job_id) for job_id, _, _ in batch]
    with store.connection.pipeline() as pipe:
        try:
            pipe.watch(*entry_keys, *job_keys)
            # One round trip for all reads, on a second connection: after WATCH, `pipe` runs each command
            # on its own (200 HGETs were 200 round trips). Reading elsewhere is safe: any change to a
            # watched key after the WATCH, whoever makes it, still fails our EXEC.
            with store.connection.pipeline(transaction=False) as reads:
                reads.mget(entry_keys)
                for key in job_keys:
                    reads.hget(key, "status")
                raws, *statuses = reads.execute()
            todo, skipped = [], []
            for (job_id, _, _), raw, status in zip(batch, raws, statuses, strict=False):
                if raw is None:
                    skipped.append("gone")
                    continue
                try:
                    entry = decode(raw, job_id)
                except GenqueueError:
                    skipped.append("corrupt")
                    continue
                if int(entry.get("replays") or 0) >= replay_cap and not force:
                    skipped.append("max_replays")
                elif status is not None and status.decode() == JobStatus.FINISHED.value:
                    skipped.append("finished")
                elif status is not None and status.decode() in LIVE:
                    skipped.append("live")
                else:
                    todo.append((job_id, entry))
            pipe.multi()
            store.remove_many_in(pipe, todo)
            # What queue.enqueue_job(job_from_entry(...)) writes, without RQ's per-job Python (replay.job_hash)
            enqueued_at = utcformat(utcnow())
            for job_id, entry in todo:
                pipe.hset(
                    queue.job_class.key_for(job_id),
                    mapping=job_hash(queue.name, entry, enqueued_at, default_timeout=queue._default_timeout),
                )
            for job_id, _ in todo:
                events.add(pipe, job_id, "replayed", {"from": "dlq"})
            if todo:
                pipe.rpush(queue.key, *(job_id for job_id, _ in todo))
                adopt(pipe, queue.name, [job_id for job_id, _ in todo])  # a bulk replay shares the queue fairly
                pipe.sadd(queue.redis_queues_keys, queue.key)
                pipe.hincrby(store.keys.stats, "replayed", len(todo))
            for why, n in Counter(skipped).items():
                pipe.hincrby(store.keys.stats, f"{REFUSED}{why}", n)
            pipe.execute()
        except WatchError:
            return False
    for why in skipped:
        result.skip(why)
    result.done += len(todo)
    result.ids.extend(job_id for job_id, _ in todo)
    return True


def bulk_purge(
    store: DLQStore,
    filters: Filters,
    *,
    cursor: str | None = None,
    rate: float | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> BulkResult:
    """Delete every matching entry; each batch is one WATCH/MULTI (an entry replaced meanwhile is kept)."""
    result = BulkResult(cursor=cursor)
    started = time.monotonic()
    size = BATCH if not rate else max(1, min(BATCH, int(rate)))
    for batch in matching(store, filters, cursor, size):
        keys = [store.keys.entry(job_id) for job_id, _, _ in batch]
        with store.connection.pipeline() as pipe:
            try:
                pipe.watch(*keys)
                raws = pipe.mget(keys)
                todo: list[tuple[str, dict[str, Any] | None]] = []
                for (job_id, _, _), raw in zip(batch, raws, strict=False):
                    if raw is None:
                        result.skip("gone")
                        continue
                    try:
                        todo.append((job_id, decode(raw, job_id)))
                    except GenqueueError:
                        todo.append((job_id, None))  # corrupt: delete it and its `all` member
                pipe.multi()
                store.remove_many_in(pipe, todo)
                pipe.execute()
            except WatchError:
                result.skip("changed_during_purge")
                continue
        result.done += len(todo)
        result.ids.extend(job_id for job_id, _ in todo)
        result.cursor = f"{batch[-1][1]!r}:{batch[-1][0]}"
        progress(len(batch))
        _throttle(started, result.done, rate)
    return result
