"""Masking of secret-looking keys (api keys, tokens, passwords, authorization, cookies) in nested data."""

from __future__ import annotations

import re
from typing import Any

# Whole key names (optionally prefixed, e.g. x-api-key, access_token); "max_tokens" is a count, not a secret.
SECRET_KEY = re.compile(
    r"^(?:.*[_-])?(?:api[_-]?key|apikey|token|password|passwd|pwd|secret(?:[_-]?key)?|authorization|auth"
    r"|cookie|set[_-]cookie|private[_-]?key|credentials?)$",
    re.IGNORECASE,
)
MASK = "***"


def mask(value: Any) -> Any:
    """A copy of `value` with every secret-looking key's value replaced by ***."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and SECRET_KEY.match(k) and v not in (None, "") else mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value
