"""A job's event stream, written by the moves themselves (jobs/events.py reads it; the schema is here so the
worker, below jobs/, can write it).

Each move that changes a job's place appends one event to the job's capped stream (backend/keys.events) in the
same script or MULTI as the change, so the stream never says something that did not happen: `enqueued`,
`started` (attempt, worker), `progress`, `retry_scheduled` (kind, delay, retry_after), `parked` / `woken`
(limit key, why), `finished`, `dead_lettered` (reason), `canceled` (by, reason), `replayed`. An entry is
`e` (the event's name), `j` (the job id) and `d` (its data, JSON); the stream id is the event's id (increasing)
and its time (ms). The stream keeps the last MAXLEN events and expires EVENTS_TTL_S after its last one, as long
as a dead-lettered job is kept.
"""

from __future__ import annotations

import json
from typing import Any

from . import keys

EVENTS = (
    "enqueued",
    "started",
    "progress",
    "retry_scheduled",
    "parked",
    "woken",
    "finished",
    "dead_lettered",
    "canceled",
    "replayed",
)
TERMINAL = frozenset({"finished", "dead_lettered", "canceled"})
MAXLEN = 1000  # events kept per job (approximate trimming: a few more may stay)
EVENTS_TTL_S = 7 * 24 * 3600

# For Lua scripts: local function gq_event(job_id, name, data_json) appends one event.
LUA_XADD = f"""
local function gq_event(job_id, name, data)
  local k = '{keys.EVENTS_PREFIX}' .. job_id
  redis.call('XADD', k, 'MAXLEN', '~', {MAXLEN}, '*', 'e', name, 'j', job_id, 'd', data)
  redis.call('EXPIRE', k, {EVENTS_TTL_S})
end
"""


def encode(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {}, separators=(",", ":"), default=str)


def add(pipe: Any, job_id: str, name: str, data: dict[str, Any] | None = None) -> None:
    """Queue one event into the caller's MULTI or guarded recorder (never on its own)."""
    key = keys.events(job_id)
    pipe.xadd(key, {"e": name, "j": job_id, "d": encode(data)}, maxlen=MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_S)
