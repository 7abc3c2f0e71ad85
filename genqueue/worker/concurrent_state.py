"""The concurrent worker's per-job state (concurrent.py's docstring, "Per-job state").

RQ's worker and the mixins keep the running job's state on `self` (`execution`, `current_claim`,
`_prepared_job_id`, `_failures`, `_limit`). A ConcurrentWorker runs up to N jobs at once, so there those are
properties (`per_job`) backed by a ContextVar holding a `JobState`: each job runs in a fresh
`contextvars.Context`, so N jobs see N states; outside any job the properties fall back to the worker's own
JobState (`_own`).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class JobState:
    """What RQ and FailurePathMixin keep on `self` for *the* running job, kept per job instead."""

    execution: Any = None
    current_claim: Any = None
    prepared_job_id: str | None = None
    failures: dict = field(default_factory=dict)  # handle_exception → handle_job_failure, this job's only
    limit: Any = None  # its limit key (worker/limiting.py), taken in the claim, released by the success move
    job: Any = None
    queue: Any = None
    thread_id: int | None = None
    released: bool = False  # its slot was given back (once)
    abandoned: bool = False  # failed from outside its thread (stuck past its timeout, shutdown grace)
    task: Any = None  # an async job's task (the task function's own, cancelled on a cancel request)
    canceled: bool = False  # a cancel request was seen (cancel.py)


job_state: contextvars.ContextVar[JobState | None] = contextvars.ContextVar("genqueue_job_state", default=None)


def per_job(attr: str) -> property:
    def get(self):
        state = job_state.get()
        return getattr(self._own if state is None else state, attr)

    def set_(self, value):
        state = job_state.get()
        target = self._own if state is None else state
        setattr(target, attr, value)
        if attr == "current_claim" and state is not None:
            with self._lock:
                if value is None:
                    self._claims.pop(id(state), None)
                else:
                    self._claims[id(state)] = value

    return property(get, set_)
