"""Generation providers. Only the simulated one ships; real ones implement genqueue.tasks.generate.Provider."""

from __future__ import annotations

import os
from functools import lru_cache

from .simulated import SimulatedProvider


@lru_cache(maxsize=1)
def default_provider() -> SimulatedProvider:
    return SimulatedProvider.from_env(os.environ)


__all__ = ["SimulatedProvider", "default_provider"]
