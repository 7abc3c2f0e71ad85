"""A job's webhook subscription: the URL and the events it is sent (pure), and where it is kept.

It is kept twice, both written before the job exists (so no event of the job can be missed): in the job's
meta (`meta["genqueue"]["webhook"]`, `["webhook_events"]`: what `jobs show`, the API and DLQ entries show,
the URL masked by support/secrets.mask) and in the relay's hash (backend/keys.WEBHOOK_SUBS, with the tenant),
which outlives the job hash so a late relay still knows where to send a finished job's events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from ..backend import keys
from ..backend.events import EVENTS, TERMINAL
from ..errors import InvalidInput
from .urls import AllowList, Resolver, check_url, parse_url, system_resolver

DEFAULT_EVENTS: tuple[str, ...] = ("finished", "dead_lettered", "canceled")
assert set(DEFAULT_EVENTS) == TERMINAL


@dataclass(frozen=True)
class Subscription:
    url: str
    events: tuple[str, ...] = DEFAULT_EVENTS

    def wants(self, event: str) -> bool:
        return event in self.events

    def as_meta(self) -> dict[str, Any]:
        return {"webhook": self.url, "webhook_events": list(self.events)}


def check_events(events: Iterable[str] | str | None) -> tuple[str, ...]:
    """The event names (default: the terminal ones), each one of backend/events.EVENTS."""
    if events is None:
        return DEFAULT_EVENTS
    if isinstance(events, str):
        events = [e for e in events.split(",")]
    names = [str(e).strip() for e in events if str(e).strip()]
    if not names:
        return DEFAULT_EVENTS
    unknown = sorted(set(names) - set(EVENTS))
    if unknown:
        raise InvalidInput(f"unknown webhook event(s) {', '.join(unknown)}; the events are {', '.join(EVENTS)}")
    return tuple(dict.fromkeys(names))


def declared(url: object, events: Iterable[str] | str | None) -> Subscription | None:
    """A task declaration's webhook, its syntax checked at import (the host is checked at each enqueue)."""
    if url is None:
        if events is not None:
            raise InvalidInput("webhook_events needs a webhook URL")
        return None
    parse_url(url)
    assert isinstance(url, str)
    return Subscription(url, check_events(events))


def for_enqueue(
    url: object, events: Iterable[str] | str | None, allow: AllowList, resolve: Resolver = system_resolver
) -> Subscription | None:
    """The subscription an enqueue asks for, its URL checked against the allow-list and its host resolved."""
    sub = declared(url, events)
    if sub is None:
        return None
    return Subscription(check_url(sub.url, allow, resolve), sub.events)


def encode(sub: Subscription, tenant: str | None, now: float | None = None) -> str:
    record = {"webhook": sub.url, "events": list(sub.events), "tenant": tenant, "at": now or time.time()}
    return json.dumps(record, separators=(",", ":"))


def decode(raw: Any) -> tuple[Subscription, str | None, float] | None:
    try:
        record = json.loads(raw)
        return Subscription(str(record["webhook"]), tuple(record["events"])), record.get("tenant"), float(record["at"])
    except (TypeError, ValueError, KeyError):
        return None


def register(
    connection: Redis,
    job_id: str,
    sub: Subscription,
    tenant: str | None,
    *,
    after: str | None = None,
    replace: bool = False,
) -> None:
    """Keep the subscription for the relay. A generated id registers before its job is written (an enqueue that
    then fails leaves one the relay drops once it finds no stream). An explicit id registers once its job
    exists and is the caller's (`after`: the relay starts past the events of the id's earlier jobs), so nobody
    can subscribe to someone else's job by naming its id; `replace`: a new job of that id (an old
    subscription of the id goes). Otherwise a job id that has one already keeps it and its cursor."""
    record = encode(sub, tenant)
    with connection.pipeline(transaction=True) as pipe:
        if replace:
            pipe.hset(keys.WEBHOOK_SUBS, job_id, record)
            pipe.delete(keys.webhook_cursor(job_id))
        else:
            pipe.hsetnx(keys.WEBHOOK_SUBS, job_id, record)
        if after:
            pipe.set(keys.webhook_cursor(job_id), after, nx=True)
        pipe.zadd(keys.WEBHOOK_DUE, {job_id: 0}, nx=not replace)
        pipe.execute()


def start_of_current_job(connection: Redis, job_id: str) -> str:
    """The cursor just before the `enqueued` event of the id's current job: earlier jobs of a reused id never
    reach this one's webhook. "0-0" for a stream with nothing before it."""
    from typing import cast

    from ..backend.replies import text

    entries = cast("list[tuple[bytes, dict]]", connection.xrevrange(keys.events(job_id), count=200))
    for event_id, fields in entries:
        if any(text(k) == "e" and text(v) == "enqueued" for k, v in fields.items()):
            ms, seq = (int(x) for x in text(event_id).split("-"))
            return f"{ms}-{seq - 1}" if seq else (f"{ms - 1}-18446744073709551615" if ms else "0-0")
    return text(entries[0][0]) if entries else "0-0"
