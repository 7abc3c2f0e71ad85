"""Generation providers, chosen by GENQUEUE_PROVIDER: simulated (the default), openai, http.

Each implements genqueue.tasks.generate.Provider. The real ones (and their SDKs) are imported only when
chosen. One provider per process: built on first use, in the work horse that runs the job (a forking
worker's parent never opens a provider's connections, so none is shared across a fork).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from ...errors import InvalidInput
from .simulated import SimulatedProvider

if TYPE_CHECKING:
    from ..generate import Provider

PROVIDERS = ("simulated", "openai", "http")


def provider_from_env(env: Mapping[str, str]) -> Provider:
    """The provider GENQUEUE_PROVIDER names, configured from `env`; InvalidInput for an unknown name."""
    name = (env.get("GENQUEUE_PROVIDER") or "simulated").strip().lower()
    if name == "simulated":
        return SimulatedProvider.from_env(env)
    if name == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider.from_env(env)
    if name == "http":
        from .http import HTTPProvider

        return HTTPProvider.from_env(env)
    raise InvalidInput(f"GENQUEUE_PROVIDER must be one of {', '.join(PROVIDERS)}, not {name!r}")


@lru_cache(maxsize=1)
def default_provider() -> Provider:
    return provider_from_env(os.environ)


__all__ = ["PROVIDERS", "SimulatedProvider", "default_provider", "provider_from_env"]
