"""The relay: from a subscribed job's event stream to delivery jobs, exactly once per event.

Why a relay and not a write in every move: each move already appends its event to the job's stream in the
same script or MULTI as the move (backend/events.py), so the stream *is* the outbox — an event that is there
happened, and stays there (capped at events.MAXLEN, kept EVENTS_TTL_S). The relay reads the streams of the
subscribed jobs after the last event it handled (its cursor, per job) and, in one WATCH/MULTI, writes one
delivery job per wanted event (its hash, its lane, its `enqueued` event, the queue's counter) and moves the
cursor past everything it read. A crash before EXEC leaves the cursor where it was (the events are read
again); after it, the deliveries exist: nothing is lost, nothing is sent twice; two relays are serialised by
the WATCH on the batch's cursors (one key per job, so enqueues of other jobs never conflict with it; and a
lock keeps the second relay idle). The moves themselves — the success path above
all — pay nothing for webhooks: no subscription lookup, no extra write.

It runs in the heartbeat thread of every worker that serves the webhook queue (cli/worker.py hands the tick
to the worker), so deliveries flow whenever something can deliver them; RELAY_TICK_S is the latency it adds.
A subscription ends when its job's `finished` or `canceled` event is relayed; after `dead_lettered` (a
replay may bring the job back) it is read every DEAD_RECHECK_S until its stream expires.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any, cast

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job
from rq.utils import now as utcnow
from rq.utils import utcformat

from ..backend import events, keys
from ..backend.counters import count_in, fields_for_enqueued
from ..backend.jobhash import queued_job_hash
from ..backend.queues import RESULT_TTL_S, make_queue
from ..backend.replies import text
from ..retry.meta import new_meta
from ..support.logs import get_logger
from ..support.secrets import mask
from ..tenants.fair import adopt
from . import subscription
from .deliver import WEBHOOK_TASK

RELAY_TICK_S = 0.25
BATCH = 200  # subscribed jobs read per tick
EVENTS_PER_JOB = 100  # events per job per tick
LOCK_MS = 5000
DEAD_RECHECK_S = 30.0
ORPHAN_S = 600.0  # a subscription whose job never wrote a stream (its enqueue failed) is dropped after this
DELIVERY_TIMEOUT_MARGIN_S = 30
log = get_logger("genqueue.webhooks")


def delivery_id(job_id: str, event_id: str) -> str:
    """The delivery job's id: the same for the same event, whatever relays it (RQ's id characters)."""
    digest = hashlib.sha1(job_id.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"wh-{digest}-{event_id}"


def message_id(job_id: str, event_id: str) -> str:
    """`webhook-id`: the job and its event's stream id, unique per event, the same on every retry."""
    return f"{job_id}:{event_id}"


def event_body(event_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The event as jobs/events.Event.as_dict shows it (id, event, job_id, at, data masked)."""
    from datetime import UTC, datetime

    try:
        data = json.loads(fields.get("d") or "{}")
    except ValueError:
        data = {}
    ms = int(event_id.split("-", 1)[0])
    at = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "id": event_id,
        "event": fields.get("e", "?"),
        "job_id": fields.get("j", ""),
        "at": at,
        "data": mask(data if isinstance(data, dict) else {"value": data}),
    }


class Relay:
    def __init__(self, connection: Redis, queue_name: str, timeout_s: float = 10.0) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.timeout_s = timeout_s
        self.token = uuid.uuid4().hex

    def tick(self, _connection: Any = None) -> int:
        """One pass if no other relay holds the lock: the number of deliveries enqueued."""
        if not self.connection.set(keys.WEBHOOK_RELAY_LOCK, self.token, nx=True, px=LOCK_MS):
            return 0
        try:
            return self.once()
        finally:
            if text(self.connection.get(keys.WEBHOOK_RELAY_LOCK) or b"") == self.token:
                self.connection.delete(keys.WEBHOOK_RELAY_LOCK)

    def once(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        due = cast("list[bytes]", self.connection.zrangebyscore(keys.WEBHOOK_DUE, "-inf", now, start=0, num=BATCH))
        ids = [text(i) for i in due]
        if not ids:
            return 0
        with self.connection.pipeline(transaction=True) as pipe:
            try:
                cursor_keys = [keys.webhook_cursor(j) for j in ids]
                pipe.watch(*cursor_keys)
                cursors = [text(c) if c else "0-0" for c in pipe.mget(cursor_keys)]
                subs = [subscription.decode(s) if s else None for s in pipe.hmget(keys.WEBHOOK_SUBS, ids)]
                read = self._read(ids, cursors)
                orphans = self._missing_streams(ids, subs, read, now) | self._owned_by_others(subs, ids, read)
                pipe.multi()
                sent = 0
                for job_id, sub in zip(ids, subs, strict=True):
                    if sub is None or job_id in orphans:
                        forget(pipe, job_id)
                        continue
                    entries = read.get(job_id, [])
                    if not entries:  # nothing new: to the back of the line (least recently read go first)
                        pipe.zadd(keys.WEBHOOK_DUE, {job_id: now}, xx=True)
                        continue
                    sent += self._relay(pipe, job_id, sub, entries, now)
                pipe.execute()
            except WatchError:
                return 0
        return sent

    def _read(self, ids: list[str], cursors: list[str]) -> dict[str, list[tuple[str, dict[str, str]]]]:
        streams: dict[Any, Any] = {keys.events(j): c for j, c in zip(ids, cursors, strict=True)}
        reply = cast("list[tuple[Any, list[tuple[Any, dict]]]]", self.connection.xread(streams, count=EVENTS_PER_JOB))
        out: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for key, entries in reply or []:
            job_id = text(key)[len(keys.EVENTS_PREFIX) :]
            out[job_id] = [(text(i), {text(k): text(v) for k, v in f.items()}) for i, f in entries]
        return out

    def _missing_streams(self, ids, subs, read, now: float) -> set[str]:
        """Subscriptions old enough whose job has no stream: an enqueue that failed, or a stream expired."""
        old = [j for j, s in zip(ids, subs, strict=True) if s is not None and j not in read and now - s[2] > ORPHAN_S]
        if not old:
            return set()
        with self.connection.pipeline(transaction=False) as p:
            for job_id in old:
                p.exists(keys.events(job_id))
            found = p.execute()
        return {j for j, f in zip(old, found, strict=True) if not f}

    def _owned_by_others(self, subs, ids, read) -> set[str]:
        """Subscriptions whose job id now holds another tenant's job (the id was freed and reused): dropped,
        never relayed — a webhook only ever hears of its own tenant's job."""
        with_events = [(j, s) for j, s in zip(ids, subs, strict=True) if s is not None and j in read]
        if not with_events:
            return set()
        with self.connection.pipeline(transaction=False) as p:
            for job_id, _ in with_events:
                p.hget(keys.rq_job(job_id), "meta")
            metas = p.execute()
        others = set()
        for (job_id, sub), raw in zip(with_events, metas, strict=True):
            if raw is None:
                continue  # in the DLQ, or gone: nothing of another tenant's to hear
            try:
                owner = (json.loads(raw).get("genqueue") or {}).get("tenant")
            except (ValueError, AttributeError):
                continue
            if owner != sub[1]:
                others.add(job_id)
        return others

    def _relay(self, pipe, job_id: str, sub, entries, now: float) -> int:
        wanted, tenant, _at = sub
        sent = 0
        last_terminal = None
        for event_id, fields in entries:
            name = fields.get("e", "")
            if name in events.TERMINAL:
                last_terminal = name
            elif name == "replayed":
                last_terminal = None
            if wanted.wants(name):
                self._enqueue(pipe, job_id, event_id, fields, wanted.url, tenant)
                sent += 1
        pipe.set(keys.webhook_cursor(job_id), entries[-1][0], ex=events.EVENTS_TTL_S)
        if last_terminal in ("finished", "canceled"):
            forget(pipe, job_id)
        elif last_terminal == "dead_lettered":
            pipe.zadd(keys.WEBHOOK_DUE, {job_id: now + DEAD_RECHECK_S})
        else:
            pipe.zadd(keys.WEBHOOK_DUE, {job_id: now}, xx=True)
        return sent

    def _enqueue(self, pipe, job_id: str, event_id: str, fields: dict[str, str], url: str, tenant) -> None:
        delivery = delivery_id(job_id, event_id)
        kwargs = {
            "webhook": url,
            "event": event_body(event_id, fields),
            "msg_id": message_id(job_id, event_id),
            "tenant": tenant,
        }
        queue = make_queue(self.connection, self.queue_name)
        pipe.sadd(queue.redis_queues_keys, queue.key)
        pipe.hset(
            Job.key_for(delivery),
            mapping=queued_job_hash(
                queue_name=self.queue_name,
                func=WEBHOOK_TASK,
                args=[],
                kwargs=kwargs,
                description=f"webhook {fields.get('e', '?')} of {job_id}",
                timeout=int(self.timeout_s + DELIVERY_TIMEOUT_MARGIN_S),
                result_ttl=RESULT_TTL_S,
                meta=new_meta(None, tenant=tenant),
                enqueued_at=utcformat(utcnow()),
            ),
        )
        pipe.rpush(queue.key, delivery)
        adopt(pipe, self.queue_name, [delivery])
        count_in(pipe, self.queue_name, fields_for_enqueued(1))
        events.add(pipe, delivery, "enqueued", {"webhook_of": job_id, "event": fields.get("e")})


def forget(pipe, job_id: str) -> None:
    pipe.hdel(keys.WEBHOOK_SUBS, job_id)
    pipe.delete(keys.webhook_cursor(job_id))
    pipe.zrem(keys.WEBHOOK_DUE, job_id)
