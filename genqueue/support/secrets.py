"""Masking of secret-looking keys (api keys, tokens, passwords, authorization, cookies) in nested data."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# Whole key names (optionally prefixed, e.g. x-api-key, access_token); "max_tokens" is a count, not a secret.
SECRET_KEY = re.compile(
    r"^(?:.*[_-])?(?:api[_-]?key|apikey|token|password|passwd|pwd|secret(?:[_-]?key)?|authorization|auth"
    r"|cookie|set[_-]cookie|private[_-]?key|credentials?)$",
    re.IGNORECASE,
)
MASK = "***"
# Every key SECRET_KEY matches contains one of these, in any case. JSON text in which none occurs (and
# which has no \u escape that could spell one) holds no secret key: masking it would change nothing.
# Substring tests on the lowered text: a case-insensitive regex alternation was 250 µs per 2 KB entry.
_SECRET_STEMS = (b"api_key", b"api-key", b"apikey", b"token", b"passw", b"pwd", b"secret", b"auth", b"cookie",
                 b"private", b"credential", b"\\u")


def may_hold_secrets(raw: bytes) -> bool:
    """A fast, conservative test on JSON text: False means no key in it can be secret; True means look."""
    lowered = raw.lower()
    return any(stem in lowered for stem in _SECRET_STEMS)


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.match(key))


def has_secrets(value: Any) -> bool:
    """Whether mask(value) would change anything. Several times cheaper than mask() (a loop, nothing
    copied), so bulk readers (export) pass stored JSON through as it is when it holds no secret."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and v not in (None, "") and is_secret_key(k):
                    return True
                if isinstance(v, (dict, list, tuple)):
                    stack.append(v)
        else:
            stack.extend(v for v in item if isinstance(v, (dict, list, tuple)))
    return False


def mask(value: Any) -> Any:
    """A copy of `value` with every secret-looking key's value replaced by ***."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value
