"""Fair and priority scheduling at the queue: lanes in front of RQ's queue list, fed to it just in time.

Why lanes: RQ's queue list `rq:queue:<q>` is one FIFO, and picking a job from the middle of it by tenant or
priority costs a scan. So a waiting job sits in a lane of its queue, one lane per (priority, tenant), and
RQ's list holds only the next FAIR_BUFFER jobs (plus what RQ itself or a parked job's wake-up pushes there).
Every push to a lane and every pop tops the list up from the lanes in the same script (fair.lua's
`fair_refill`), one O(1) step per job, so workers keep popping RQ's list as before — BLMOVE wakes an idle
worker, the intermediate list, the start claim and the sweep are unchanged, and a job is always in exactly
one list. What this costs: `rq info` and rq-dashboard count the list only, i.e. up to FAIR_BUFFER jobs of a
long backlog; genqueue's own counts (`waiting`, /metrics' queue depth) add the lanes.

The order (tenants/fairness.py): across priorities, the oldest head once each priority's time offset is
applied (aging); within a priority, tenants in a ring, each taking up to its weight per turn.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from redis import Redis

from ..backend import keys
from ..backend.replies import text
from ..backend.scripts import registered
from .fairness import DEFAULT_PRIORITY, FAIR_BUFFER, PRIORITIES, offsets_ms

FAIR = resources.files("genqueue.tenants").joinpath("lua", "fair.lua").read_text()
CONTEXT_ARGS = 7  # what context_args returns: fair.lua's fair_ctx reads that many ARGV

REFILL = FAIR + "\nreturn fair_refill(fair_ctx(1))\n"

# `ids`, pushed to the tail of RQ's list earlier in the same MULTI (by RQ's enqueue_job or a pipeline's
# rpush), move to their lanes in order; each is checked at the tail before it is taken, so an id that was not
# pushed after all (RQ defers a job with unmet dependencies) leaves the list as it is.
# ARGV: context, now ms, job key prefix, ids...
ADOPT = (
    FAIR
    + """
local c = fair_ctx(1)
local now_ms, job_prefix = ARGV[8], ARGV[9]
local taken = {}
for i = #ARGV, 10, -1 do
  if redis.call('LINDEX', c.queue, -1) ~= ARGV[i] then break end
  taken[#taken + 1] = redis.call('RPOP', c.queue)
end
for i = #taken, 1, -1 do
  local tenant, level = fair_route_of(job_prefix .. taken[i])
  fair_push(c, tenant, level, taken[i], now_ms)
end
return fair_refill(c)
"""
)


def context_args(queue_name: str) -> list[Any]:
    """fair.lua's context for `queue_name`: prefix, weights hash, RQ's list, buffer, the priorities' offsets."""
    return [keys.fair(queue_name), keys.TENANT_WEIGHTS, keys.rq_queue(queue_name), FAIR_BUFFER, *offsets_ms()]


def now_ms() -> int:
    return int(time.time() * 1000)


def route(meta: dict[str, Any] | None) -> tuple[str, str]:
    """(tenant, priority) of a job from its genqueue bookkeeping, as fair.lua's fair_route_of reads it."""
    g = (meta or {}).get("genqueue") or {}
    tenant, priority = g.get("tenant"), g.get("priority")
    return (
        tenant if isinstance(tenant, str) else "",
        priority if isinstance(priority, str) and priority in PRIORITIES else DEFAULT_PRIORITY,
    )


def refill(connection: Redis, queue_name: str) -> int:
    """Top RQ's list up from the lanes: after a pop that did not (RQ's own dequeue), and on every
    scheduler tick, so a worker killed between a pop and its refill never leaves the lanes unfed."""
    return int(registered(connection, REFILL)(args=context_args(queue_name)))


def adopt(pipe, queue_name: str, ids: list[str]) -> None:
    """In a MULTI (`pipe`), after `ids` were pushed to RQ's list: move them to their lanes instead."""
    if ids:
        pipe.eval(ADOPT, 0, *context_args(queue_name), now_ms(), keys.RQ_JOB_PREFIX, *ids)


def waiting(connection: Redis, queue_names: list[str]) -> dict[str, int]:
    """Jobs waiting per queue: RQ's list and the lanes."""
    with connection.pipeline(transaction=False) as pipe:
        for name in queue_names:
            pipe.llen(keys.rq_queue(name))
            pipe.hget(keys.fair(name) + "n", "*")
        replies = pipe.execute()
    return {name: int(replies[2 * i]) + int(replies[2 * i + 1] or 0) for i, name in enumerate(queue_names)}


def waiting_by_tenant(connection: Redis, queue_name: str) -> dict[str, int]:
    """Jobs waiting in the lanes of `queue_name` per tenant ("" = no tenant); RQ's list not included."""
    raw = connection.hgetall(keys.fair(queue_name) + "n")
    named = {text(k): int(v) for k, v in raw.items()}
    return {k[2:]: v for k, v in named.items() if k.startswith("t:") and v > 0}


def waiting_ids(connection: Redis, queue_name: str) -> list[str]:
    """Every job id waiting in `queue_name`: RQ's list, then each lane (a SCAN: for admins and tests, not for
    a hot path); the order within each is the order it will be taken in, not the order across them."""
    ids = [text(raw) for raw in connection.lrange(keys.rq_queue(queue_name), 0, -1)]
    for lane in sorted(
        set(connection.scan_iter(match=keys.fair(queue_name).replace("[", "\\[") + "lane:*", count=500))
    ):
        ids += [text(raw).partition("|")[2] for raw in connection.lrange(lane, 0, -1)]
    return ids
