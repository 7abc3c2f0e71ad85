"""DLQ storage: keys, Lua and transactions. It stores and finds; it never decides.

Layout (see keys.py): one JSON string per entry with EXPIRE = retention, a sorted set `all` scored by
failed_at, and one sorted set per indexed value (kind, func, user, reason, fingerprint). Get and delete
are O(1)/O(indexes) by id; pages walk a sorted set by score, never SCAN.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from itertools import islice
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline

from ..backend.keys import DLQKeys
from ..backend.replies import ScoredMembers, text
from ..errors import CorruptEntry, InvalidInput, NotFound
from ..support.logs import get_logger
from .entry import decode, encode, failed_at_score, index_values

DEFAULT_CAP = 100_000
PAGE_CHUNK = 50  # ids read per MGET while filling a page
log = get_logger("genqueue.dlq")


@cache
def _lua(name: str) -> str:
    """A script with the shared index_keys() function in front (after the script's leading comments and
    its `local prefix` line, which index_keys() reads)."""
    folder = resources.files("genqueue.dlq").joinpath("lua")
    script = folder.joinpath(name).read_text()
    head, sep, body = script.partition("local prefix = ")
    line, _, rest = body.partition("\n")
    return f"{head}{sep}{line}\n{folder.joinpath('index_keys.lua').read_text()}\n{rest}"


@dataclass(frozen=True)
class Filters:
    kind: str | None = None
    func: str | None = None
    user: str | None = None
    reason: str | None = None
    fingerprint: str | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None

    @classmethod
    def parse(
        cls,
        *,
        kind=None,
        func=None,
        user=None,
        reason=None,
        fingerprint=None,
        since=None,
        until=None,
        since_name: str = "since",
        until_name: str = "until",
    ) -> Filters:
        """From a person's words (the CLI's options, the API's query): `since`/`until` as a duration ago
        (`2h`) or an ISO timestamp; kind case-insensitive; reason one of Reason's values."""
        from ..retry.kinds import Reason

        if reason and reason not in {r.value for r in Reason}:
            raise InvalidInput(f"reason must be one of {', '.join(r.value for r in Reason)}, not {reason!r}")
        return cls(
            kind=kind.upper() if kind else None,
            func=func or None,
            user=user or None,
            reason=reason or None,
            fingerprint=fingerprint or None,
            since=time_bound(since, since_name),
            until=time_bound(until, until_name),
        )

    def indexed(self) -> dict[str, str]:
        return {f: v for f in ("kind", "func", "user", "reason", "fingerprint") if (v := getattr(self, f))}

    def matches(self, entry: dict[str, Any]) -> bool:
        values = index_values(entry)
        return all(values.get(f) == v for f, v in self.indexed().items())


def time_bound(text: str | None, name: str) -> float | None:
    """`2h` (that long ago) or an ISO timestamp → epoch seconds."""
    if not text:
        return None
    from ..support.durations import parse_duration

    try:
        return time.time() - parse_duration(text).total_seconds()
    except InvalidInput:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"{name} must be a duration like 2h or an ISO timestamp, not {text!r}") from None


@dataclass
class Page:
    entries: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    skipped: list[str] = field(default_factory=list)  # ids whose entry JSON was corrupt


def parse_cursor(cursor: str) -> tuple[str, str]:
    """A page or bulk cursor "<score>:<job_id>" as (score text, job id), or InvalidInput."""
    score_text, sep, after_id = cursor.partition(":")
    try:
        score = float(score_text)
    except ValueError:
        score = None
    if not sep or not after_id or score is None or score != score:
        raise InvalidInput(f"not a cursor: {cursor!r} (expected <score>:<job_id>, as printed by a previous run)")
    return repr(score), after_id


class DLQStore:
    def __init__(self, connection: Redis, queue: str, *, retention_s: int, cap: int = DEFAULT_CAP) -> None:
        self.connection = connection
        self.keys = DLQKeys(queue)
        self.retention_s = retention_s
        self.cap = cap
        self._add_script = connection.register_script(_lua("add.lua"))
        self._delete_script = connection.register_script(_lua("delete.lua"))

    # -- writes -------------------------------------------------------------------------------------------
    def add(
        self,
        entry: dict[str, Any],
        pipeline: Pipeline | None = None,
        *,
        raw: str | None = None,
        ttl_s: int | None = None,
        counter: str = "dead_lettered",
    ):
        """Write an entry (replacing one with the same id, whose index members go too), prune members past
        retention and evict over the cap, all in one Lua call. With `pipeline`, the call joins the caller's
        MULTI and its reply {replaced, expired, evicted} arrives with EXEC; else it is returned.
        `raw` stores that exact JSON text (import keeps entries byte-for-byte)."""
        return self.add_encoded(
            entry["job_id"],
            raw if raw is not None else encode(entry),
            failed_at_score(entry),
            index_values(entry),
            pipeline,
            ttl_s=ttl_s,
            counter=counter,
        )

    def add_encoded(
        self,
        job_id: str,
        raw: str,
        score: float,
        indexes: Mapping[str, str],
        pipeline: Pipeline | None = None,
        *,
        ttl_s: int | None = None,
        counter: str = "dead_lettered",
    ):
        """add() for callers that already hold the entry's JSON, its score (failed_at) and its index values
        (entry.index_values), e.g. loaders writing many entries built from one template."""
        return self._add_script(
            keys=[
                self.keys.entry(job_id),
                self.keys.all,
                self.keys.stats,
                *(self.keys.index(f, v) for f, v in indexes.items()),
            ],
            args=[
                job_id,
                raw,
                repr(score),
                ttl_s or self.retention_s,
                repr(time.time() - self.retention_s),
                self.cap,
                self.keys.prefix,
                counter,
            ],
            client=pipeline if pipeline is not None else self.connection,
        )

    def note_pruned(self, reply) -> None:
        """Log, at warning level, what an add() replaced, pruned or evicted (never silently)."""
        try:
            replaced, expired, evicted = (int(x) for x in reply)
        except (TypeError, ValueError):
            return
        if replaced:
            log.warning("dlq.replaced", queue=self.keys.queue, count=replaced)
        if expired:
            log.warning("dlq.expired_pruned", queue=self.keys.queue, count=expired)
        if evicted:
            log.warning("dlq.evicted", queue=self.keys.queue, count=evicted, cap=self.cap)

    def remove_in(self, pipeline: Pipeline, job_id: str, entry: dict[str, Any] | None) -> None:
        """Queue the removal of an entry and its index members (entry None: corrupt, indexes unknown)."""
        self.remove_many_in(pipeline, [(job_id, entry)])

    def remove_many_in(self, pipeline: Pipeline, entries: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        """remove_in for a batch, grouped: one DEL, one ZREM per index key with all its members (a bulk
        batch of 200 entries queues ~20 commands instead of ~1,400)."""
        if not entries:
            return
        by_index: dict[str, list[str]] = defaultdict(list)
        for job_id, entry in entries:
            if entry is not None:
                for f, v in index_values(entry).items():
                    by_index[self.keys.index(f, v)].append(job_id)
        ids = [job_id for job_id, _ in entries]
        pipeline.delete(*(self.keys.entry(job_id) for job_id in ids))
        pipeline.zrem(self.keys.all, *ids)
        for key, members in by_index.items():
            pipeline.zrem(key, *members)

    def delete(self, job_id: str) -> dict[str, Any] | None:
        """Delete one entry and its index members in one Lua call (one round trip); returns the entry
        (None if it was corrupt: its indexes are unknown, the entry and `all` member go). NotFound if absent."""
        raw = self._delete_script(keys=[self.keys.entry(job_id), self.keys.all], args=[job_id, self.keys.prefix])
        if raw is None:
            raise NotFound(f"no DLQ entry {job_id} in {self.keys.dlq_name}")
        try:
            return decode(raw, job_id)
        except CorruptEntry:
            return None

    # -- reads --------------------------------------------------------------------------------------------
    def get_raw(self, job_id: str) -> bytes | None:
        return cast("bytes | None", self.connection.get(self.keys.entry(job_id)))

    def get(self, job_id: str) -> dict[str, Any]:
        raw = self.connection.get(self.keys.entry(job_id))
        if raw is None:
            raise NotFound(f"no DLQ entry {job_id} in {self.keys.dlq_name}")
        return decode(raw, job_id)

    def exists(self, job_id: str) -> bool:
        return bool(self.connection.exists(self.keys.entry(job_id)))

    def count(self) -> int:
        return int(self.connection.zcard(self.keys.all))

    def ttl(self, job_id: str) -> int:
        return int(self.connection.ttl(self.keys.entry(job_id)))

    def stats_counters(self) -> dict[str, int]:
        return {text(k): int(v) for k, v in self.connection.hgetall(self.keys.stats).items()}

    def _source_key(self, filters: Filters) -> str:
        """The smallest index among the filters (or `all`); other filters are checked per entry."""
        indexed = filters.indexed()
        if not indexed:
            return self.keys.all
        keys = [self.keys.index(f, v) for f, v in indexed.items()]
        return min(keys, key=lambda k: self.connection.zcard(k))

    def prune(self) -> int:
        """Maintenance: drop index members past retention from every index of this queue; returns how many
        entries had expired (counted once, from `all`) and adds them to stats.expired."""
        cutoff = "(" + repr(time.time() - self.retention_s)
        expired = int(self.connection.zremrangebyscore(self.keys.all, "-inf", cutoff))
        for key in self.connection.scan_iter(match=self.keys.prefix + "by:*", count=500):
            self.connection.zremrangebyscore(key, "-inf", cutoff)
        if expired:
            self.connection.hincrby(self.keys.stats, "expired", expired)
            log.warning("dlq.expired_pruned", queue=self.keys.queue, count=expired)
        return expired

    def index_counts(self, field_name: str) -> dict[str, int]:
        """value → entries, for one indexed field (SCAN over that field's index keys)."""
        prefix = self.keys.index(field_name, "")
        keys = list(self.connection.scan_iter(match=prefix + "*", count=500))
        if not keys:
            return {}
        with self.connection.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            counts = pipe.execute()
        return {k.decode()[len(prefix) :]: int(n) for k, n in zip(keys, counts, strict=False) if n}

    def page(self, filters: Filters = Filters(), *, cursor: str | None = None, limit: int = 100) -> Page:
        """Newest first. The cursor is "<score>:<job_id>" of the last entry returned. Entries are read with
        one MGET per chunk of ids, not one GET each."""
        source = self._source_key(filters)
        high: str = "+inf" if filters.until is None else repr(filters.until)
        low: str = "-inf" if filters.since is None else repr(filters.since)
        after_id = None
        if cursor:
            high, after_id = parse_cursor(cursor)
        entries: list[dict[str, Any]] = []
        skipped: list[str] = []
        last = None
        ids = self._walk(source, high, low, after_id, batch=max(limit, PAGE_CHUNK))
        while len(entries) < limit:
            chunk = list(islice(ids, max(limit - len(entries), PAGE_CHUNK)))
            if not chunk:
                break
            raws = self.connection.mget([self.keys.entry(job_id) for job_id, _ in chunk])
            for (job_id, score), raw in zip(chunk, raws, strict=True):
                if len(entries) >= limit:
                    break
                if raw is None:
                    continue  # expired; its index member is pruned on the next write or by maintenance
                try:
                    entry = decode(raw, job_id)
                except CorruptEntry:
                    skipped.append(job_id)  # the caller reports it (the CLI prints a warning line)
                    continue
                if filters.matches(entry):
                    entries.append(entry)
                    last = f"{score!r}:{job_id}"
        total = int(self.connection.zcard(source))
        return Page(entries, last if len(entries) >= limit else None, total, skipped)

    def _walk(
        self, key: str, high: str, low: str, after_id: str | None, batch: int = 200
    ) -> Iterator[tuple[str, float]]:
        """(job_id, score) newest first, resuming after `after_id` at score `high`.

        Keyset pagination, not offsets: each read starts again at the last score yielded and drops the
        members already yielded (same score, member ≥ the last one: ZREVRANGEBYSCORE orders ties in reverse
        byte order). A bulk replay deletes what it has read while it walks; with offsets, every deletion
        would shift unread members past the offset and they would be silently skipped."""
        top: tuple[float, bytes] | None = None if after_id is None else (float(high), after_id.encode())
        while True:
            want = batch
            while True:  # widen the read while it holds only members already yielded (a run of equal scores)
                rows = cast(
                    ScoredMembers, self.connection.zrevrangebyscore(key, high, low, start=0, num=want, withscores=True)
                )
                fresh = [(m, sc) for m, sc in rows if top is None or sc != top[0] or m < top[1]]
                if fresh or len(rows) < want:
                    break
                want *= 2
            if not fresh:
                return
            for member, score in fresh:
                yield member.decode(), score
            member, score = fresh[-1]
            high, top = repr(score), (score, member)
