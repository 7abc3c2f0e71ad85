"""Durations as people type them: 30s, 5m, 2h, 1d, 250ms, or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from ..errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise InvalidInput(f"bad duration {text!r}: use e.g. 30s, 5m, 2h, 1d")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError:
        raise InvalidInput(f"duration {text!r} is too long") from None
