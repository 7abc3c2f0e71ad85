"""One job from a producer's or an admin's side: enqueue, the enqueue script, status, manual retry.

`genqueue.jobs.generate` is also the dotted function name every generation job stored before the layout
change carries in Redis (queued, scheduled, dead-lettered, exported JSONL), and the name jobs are still
enqueued under: RQ resolves it by importing `genqueue.jobs` and reading `generate`, so it stays an alias of
the built-in task (`genqueue.tasks.generate.generate`), loaded only when asked for.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "generate":
        from ..tasks.generate import generate

        return generate
    raise AttributeError(f"module 'genqueue.jobs' has no attribute {name!r}")
