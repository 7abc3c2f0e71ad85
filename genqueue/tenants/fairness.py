"""Priorities and tenant weights: the names, their checks and the numbers the fair pop uses (pure).

A queue's waiting jobs sit in lanes, one per (priority, tenant); the pop script (tenants/lua/fair.lua) feeds
RQ's queue list from them a job at a time. Across priorities it takes the lane head that has waited longest
once each priority's offset is applied — priority as a time offset, as Trigger.dev does — so a `high` job
passes `normal` jobs enqueued up to PRIORITY_OFFSET_S before it, and nothing enqueued more than
2 * PRIORITY_OFFSET_S after a `low` job can pass it (its wait is bounded: aging). Within a priority, tenants
take turns in a ring, each taking up to its weight in jobs per turn (weighted round robin; a job costs one).
"""

from __future__ import annotations

from ..errors import InvalidInput

PRIORITIES = ("high", "normal", "low")
DEFAULT_PRIORITY = "normal"
PRIORITY_OFFSET_S = 60  # a high job counts as enqueued this much earlier, a low one this much later
DEFAULT_WEIGHT = 1
MAX_WEIGHT = 1000
NO_TENANT = "*"  # the name the weights hash gives the one share of the jobs with no tenant
FAIR_BUFFER = 2  # jobs kept in RQ's queue list ahead of the lanes: what a new job may wait behind, at most


def check_priority(priority: str | None) -> str:
    """A priority name, or InvalidInput; None is the default."""
    if priority is None:
        return DEFAULT_PRIORITY
    if not isinstance(priority, str) or priority.lower() not in PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    return priority.lower()


def check_weight(weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise InvalidInput(f"weight must be a whole number from 1 to {MAX_WEIGHT}, not {weight!r}")
    return weight


def offsets_ms(offset_s: float = PRIORITY_OFFSET_S) -> list[int]:
    """What the pop script adds to each priority's enqueue time (ms), in PRIORITIES order."""
    step = int(offset_s * 1000)
    return [-step, 0, step]
