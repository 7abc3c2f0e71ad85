"""Reading a job's events (backend/events.py writes them, inside the moves): for `genqueue jobs watch`, the
SSE routes (api/routes/events.py) and `EnqueueResult.wait`.

An event as shown: {"id": stream id, "event": name, "job_id", "at": ISO time (the id's milliseconds),
"data": {...}} — `data` masked like payloads and results.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from ..backend import keys
from ..backend.events import EVENTS, TERMINAL
from ..dlq.entry import iso
from ..support.secrets import mask

__all__ = ["EVENTS", "TERMINAL", "Event", "JobDeadLettered", "read", "read_many", "wait_for_outcome"]
WAIT_BLOCK_MS = 5000  # one XREAD of `wait` blocks at most this long (below any client socket timeout)


class JobDeadLettered(Exception):
    """`EnqueueResult.wait`: the job ended in the dead-letter queue. `.reason` and `.event` say why."""

    def __init__(self, job_id: str, event: Event) -> None:
        self.job_id, self.event = job_id, event
        self.reason = event.data.get("reason")
        super().__init__(f"job {job_id} was dead-lettered ({self.reason}, {event.data.get('kind')})")


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    event: str
    job_id: str
    data: dict[str, Any]

    @property
    def at(self) -> str:
        return iso(int(self.id.split("-", 1)[0]) / 1000)

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "job_id": self.job_id, "at": self.at, "data": mask(self.data)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(entry_id: Any, fields: dict) -> Event:
    f = {_text(k): _text(v) for k, v in fields.items()}
    try:
        data = json.loads(f.get("d") or "{}")
    except ValueError:
        data = {}
    return Event(_text(entry_id), f.get("e", "?"), f.get("j", ""), data if isinstance(data, dict) else {"value": data})


def read(connection: Redis, job_id: str, after: str = "0", count: int = 1000) -> list[Event]:
    """The job's events after id `after` ("0": from the first one kept)."""
    start = "-" if after in ("", "0", "0-0") else f"({after}"
    entries = cast("list[tuple[Any, dict]]", connection.xrange(keys.events(job_id), min=start, count=count))
    return [decode(i, f) for i, f in entries]


def read_many(connection: Redis, after: dict[str, str], block_ms: int | None = None, count: int = 100) -> list[Event]:
    """XREAD over several jobs' streams ({job id: last id seen}), blocking up to block_ms for the first event."""
    streams: dict[Any, Any] = {keys.events(job_id): (last or "0-0") for job_id, last in after.items()}
    if not streams:
        return []
    reply = cast("list[tuple[Any, list[tuple[Any, dict]]]]", connection.xread(streams, count=count, block=block_ms))
    out = [decode(i, f) for _key, entries in (reply or []) for i, f in entries]
    return sorted(out, key=lambda e: tuple(int(x) for x in e.id.split("-")))


def wait_for_outcome(connection: Redis, job_id: str, timeout: float | None = None) -> Event:
    """Block (XREAD, no polling loop) until the job's latest event is terminal; return that event. A job that
    had already ended answers at once. TimeoutError after `timeout` seconds (None: wait as long as it takes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor = "0-0"
    while True:
        left_ms = WAIT_BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise TimeoutError(f"job {job_id} did not end within {timeout:g} s")
        events = read_many(connection, {job_id: cursor}, block_ms=min(left_ms, WAIT_BLOCK_MS), count=1000)
        if events:
            cursor = events[-1].id
            if events[-1].terminal and not read(connection, job_id, cursor, count=1):
                return events[-1]
